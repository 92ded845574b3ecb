package wechat_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// memTokenStore is an in-memory wechat.TokenStore: a test double of the
// store shared by several processes (the Redis one is tested with the
// store). The token and the fetch lock expire by the real clock.
type memTokenStore struct {
	mu        sync.Mutex
	tok       string
	expires   time.Time
	lockID    int // the holder of the lock, 0 when free
	lockUntil time.Time
	nextID    int
	reads     int
	drops     []string // the tokens DropSharedToken was asked to drop

	// fail, when set, gives the error a call returns; method is the
	// TokenStore method's name, tok the token it carries, if any.
	fail func(method, tok string) error
	// afterRead, when set, runs after each SharedToken has its answer,
	// as another process acting just then would.
	afterRead func()
	// refused gets a value, when there is room, each time the lock is
	// refused: a test can see a client wait.
	refused chan struct{}
}

var _ wechat.TokenStore = (*memTokenStore)(nil)

func newMemTokenStore() *memTokenStore {
	return &memTokenStore{refused: make(chan struct{}, 1)}
}

// setFail sets fail while clients may be calling.
func (s *memTokenStore) setFail(f func(method, tok string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = f
}

// failure is called with s.mu held.
func (s *memTokenStore) failure(method, tok string) error {
	if s.fail == nil {
		return nil
	}
	return s.fail(method, tok)
}

func (s *memTokenStore) SharedToken(context.Context) (tok string, left time.Duration, ok bool, err error) {
	s.mu.Lock()
	s.reads++
	if err = s.failure("SharedToken", ""); err == nil {
		left = time.Until(s.expires)
		ok = s.tok != "" && left > 0
		if ok {
			tok = s.tok
		} else {
			left = 0
		}
	}
	after := s.afterRead
	s.mu.Unlock()
	if after != nil {
		after()
	}
	return tok, left, ok, err
}

func (s *memTokenStore) LockTokenFetch(_ context.Context, hold time.Duration) (func(), bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failure("LockTokenFetch", ""); err != nil {
		return nil, false, err
	}
	now := time.Now()
	if s.lockID != 0 && now.Before(s.lockUntil) {
		select {
		case s.refused <- struct{}{}:
		default:
		}
		return nil, false, nil
	}
	s.nextID++
	id := s.nextID
	s.lockID, s.lockUntil = id, now.Add(hold)
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.lockID == id { // not if it expired and another took it
			s.lockID = 0
		}
	}, true, nil
}

func (s *memTokenStore) PutSharedToken(_ context.Context, tok string, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.failure("PutSharedToken", tok); err != nil {
		return err
	}
	s.tok, s.expires = tok, time.Now().Add(ttl)
	return nil
}

func (s *memTokenStore) DropSharedToken(_ context.Context, tok string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drops = append(s.drops, tok)
	if err := s.failure("DropSharedToken", tok); err != nil {
		return err
	}
	if s.tok == tok {
		s.tok = ""
	}
	return nil
}

// kept returns the token kept, "" when none is.
func (s *memTokenStore) kept() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !time.Now().Before(s.expires) {
		return ""
	}
	return s.tok
}

func (s *memTokenStore) readCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads
}

func (s *memTokenStore) dropped() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.drops)
}

func sharedClient(srv *wechattest.Server, store wechat.TokenStore, mod func(*wechat.ClientOptions)) *wechat.Client {
	c := apiClient(srv, nil, func(o *wechat.ClientOptions) {
		o.TokenStore = store
		if mod != nil {
			mod(o)
		}
	})
	return c
}

func deadline(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Five processes start cold at once, each with its own cache and a
// hundred callers between them: one fetch for all, one token.
func TestSharedTokenColdStartOfSeveralProcesses(t *testing.T) {
	const clients, callers = 5, 20
	for _, mode := range tokenModes {
		t.Run(mode.name, func(t *testing.T) {
			srv := fakeAPI(t)
			// A slow answer keeps the others waiting on the lock.
			srv.SetLatency(mode.api, 50*time.Millisecond)
			store := newMemTokenStore()
			ctx := deadline(t, 10*time.Second)
			toks := make(chan string, clients*callers)
			var wg sync.WaitGroup
			for range clients {
				c := sharedClient(srv, store, func(o *wechat.ClientOptions) { o.UseLegacyToken = mode.legacy })
				t.Cleanup(c.Close)
				for range callers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						tok, err := c.Token(ctx)
						if err != nil {
							t.Errorf("Token: %v", err)
						}
						toks <- tok
					}()
				}
			}
			wg.Wait()
			close(toks)
			if got := srv.TokenFetches(); got != 1 {
				t.Errorf("token fetches = %d, want 1", got)
			}
			want := store.kept()
			if want == "" {
				t.Fatal("no token kept in the store")
			}
			for tok := range toks {
				if tok != want {
					t.Fatalf("a caller got %q, want the shared %q", tok, want)
				}
			}
		})
	}
}

// A token already in the store is used without a fetch, and then cached:
// the store is not read again for every call.
func TestSharedTokenAlreadyKept(t *testing.T) {
	srv := fakeAPI(t)
	store := newMemTokenStore()
	ctx := deadline(t, 5*time.Second)
	if err := store.PutSharedToken(ctx, "KEPT", time.Hour); err != nil {
		t.Fatal(err)
	}
	c := sharedClient(srv, store, nil)
	defer c.Close()
	for range 3 {
		tok, err := c.Token(ctx)
		if err != nil || tok != "KEPT" {
			t.Fatalf("Token = %q, %v; want the kept token", tok, err)
		}
	}
	if got := srv.TokenFetches(); got != 0 {
		t.Errorf("token fetches = %d, want 0", got)
	}
	if got := store.readCount(); got != 1 {
		t.Errorf("store reads = %d, want 1 (then the local cache)", got)
	}
}

// Another process puts its token and gives the lock back between this
// process's read and its lock: the token is read again under the lock,
// and not fetched.
func TestSharedTokenPutBetweenReadAndLock(t *testing.T) {
	srv := fakeAPI(t)
	store := newMemTokenStore()
	ctx := deadline(t, 5*time.Second)
	var once sync.Once
	store.afterRead = func() {
		once.Do(func() {
			if err := store.PutSharedToken(ctx, "OTHER", time.Hour); err != nil {
				t.Error(err)
			}
		})
	}
	c := sharedClient(srv, store, nil)
	defer c.Close()
	if tok, err := c.Token(ctx); err != nil || tok != "OTHER" {
		t.Errorf("Token = %q, %v; want the other process's token", tok, err)
	}
	if got := srv.TokenFetches(); got != 0 {
		t.Errorf("token fetches = %d, want 0", got)
	}
}

// A process took the fetch lock and died: the others wait for its lock
// to end, then one of them fetches.
func TestSharedTokenLockOfADeadProcess(t *testing.T) {
	const hold = 200 * time.Millisecond
	srv := fakeAPI(t)
	store := newMemTokenStore()
	ctx := deadline(t, 5*time.Second)
	locked := time.Now()
	if _, ok, err := store.LockTokenFetch(ctx, hold); !ok || err != nil {
		t.Fatalf("lock: %v, %v", ok, err)
	}
	c := sharedClient(srv, store, nil)
	defer c.Close()
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	if waited := time.Since(locked); waited < hold {
		t.Errorf("fetched after %v, while the dead process's lock held (%v)", waited, hold)
	}
	if got := srv.TokenFetches(); got != 1 {
		t.Errorf("token fetches = %d, want 1", got)
	}
	if kept := store.kept(); kept != tok {
		t.Errorf("store keeps %q, want the fetched %q", kept, tok)
	}
}

// Close ends a wait for another process's lock.
func TestSharedTokenWaitEndsWithClose(t *testing.T) {
	srv := fakeAPI(t)
	store := newMemTokenStore()
	ctx := deadline(t, 5*time.Second)
	if _, ok, err := store.LockTokenFetch(ctx, time.Hour); !ok || err != nil {
		t.Fatalf("lock: %v, %v", ok, err)
	}
	c := sharedClient(srv, store, nil)
	done := make(chan error, 1)
	go func() {
		_, err := c.Token(ctx)
		done <- err
	}()
	select {
	case <-store.refused: // the client is waiting
	case <-ctx.Done():
		t.Fatal("the client never asked for the lock")
	}
	c.Close()
	select {
	case err := <-done:
		if err == nil || ctx.Err() != nil {
			t.Errorf("Token = %v, want an error before the caller's deadline", err)
		}
	case <-ctx.Done():
		t.Fatal("the wait outlived Close")
	}
	if got := srv.TokenFetches(); got != 0 {
		t.Errorf("token fetches = %d, want 0", got)
	}
}

// A token error with an old token leaves the newer token another process
// put in the store, and this process takes that one without a fetch; a
// token error with the token kept drops it, and one fetch replaces it.
func TestSharedTokenErrorDropsOnlyTheRejectedToken(t *testing.T) {
	for _, mode := range tokenModes {
		t.Run(mode.name, func(t *testing.T) {
			srv := fakeAPI(t)
			store := newMemTokenStore()
			ctx := deadline(t, 5*time.Second)
			legacy := func(o *wechat.ClientOptions) { o.UseLegacyToken = mode.legacy }
			a := sharedClient(srv, store, legacy)
			defer a.Close()
			old, err := a.Token(ctx)
			if err != nil {
				t.Fatal(err)
			}

			// Another process forces a new token and keeps it in the
			// store; a still has the old one cached.
			srv.InvalidateTokens()
			other := apiClient(srv, nil, legacy)
			defer other.Close()
			fresh, err := other.Token(ctx)
			if err != nil || fresh == old {
				t.Fatalf("other process's token: %q, %v", fresh, err)
			}
			if err := store.PutSharedToken(ctx, fresh, time.Hour); err != nil {
				t.Fatal(err)
			}
			if err := a.SendCustom(ctx, textTo("u1", "x")); err != nil {
				t.Fatalf("send with the old token: %v", err)
			}
			if got := store.kept(); got != fresh {
				t.Fatalf("store keeps %q after a token error with the old token, want the new one", got)
			}
			if got := store.dropped(); !slices.Equal(got, []string{old}) {
				t.Errorf("dropped %q, want the rejected token only", got)
			}
			if got := srv.TokenFetches(); got != 2 {
				t.Errorf("token fetches = %d, want 2 (the new token came from the store)", got)
			}

			// Now the token kept is rejected.
			srv.InvalidateTokens()
			if err := a.SendCustom(ctx, textTo("u2", "x")); err != nil {
				t.Fatalf("send with the kept token: %v", err)
			}
			if got := srv.TokenFetches(); got != 3 {
				t.Errorf("token fetches = %d, want 3 (one refetch)", got)
			}
			third := store.kept()
			if third == "" || third == old || third == fresh {
				t.Fatalf("store keeps %q, want a newly fetched token", third)
			}
			b := sharedClient(srv, store, legacy)
			defer b.Close()
			if tok, err := b.Token(ctx); err != nil || tok != third {
				t.Errorf("another process got %q, %v; want the refetched token", tok, err)
			}
			if got := srv.TokenFetches(); got != 3 {
				t.Errorf("token fetches = %d, want 3", got)
			}
			for _, u := range []string{"u1", "u2"} {
				if got := texts(srv, u); len(got) != 1 {
					t.Errorf("%s got %d messages, want 1", u, len(got))
				}
			}
		})
	}
}

var errStoreDown = errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")

// An error of the store is returned, and no process fetches a token of
// its own; once the store is back, so is the token, without a pause.
func TestSharedTokenStoreErrors(t *testing.T) {
	for _, method := range []string{"SharedToken", "LockTokenFetch"} {
		t.Run(method, func(t *testing.T) {
			srv := fakeAPI(t)
			store := newMemTokenStore()
			var mu sync.Mutex
			down := true
			store.fail = func(m, _ string) error {
				mu.Lock()
				defer mu.Unlock()
				if down && m == method {
					return errStoreDown
				}
				return nil
			}
			c := sharedClient(srv, store, nil)
			defer c.Close()
			ctx := deadline(t, 5*time.Second)
			for range 3 {
				_, err := c.Token(ctx)
				if !errors.Is(err, errStoreDown) || !strings.Contains(err.Error(), "shared store") {
					t.Fatalf("Token = %v, want the store's error", err)
				}
			}
			if err := c.SendCustom(ctx, textTo("u", "x")); !errors.Is(err, errStoreDown) {
				t.Fatalf("send = %v, want the store's error", err)
			}
			if got := srv.TokenFetches(); got != 0 {
				t.Errorf("token fetches = %d while the store is down, want 0", got)
			}
			mu.Lock()
			down = false
			mu.Unlock()
			if tok, err := c.Token(ctx); err != nil || tok == "" {
				t.Fatalf("Token once the store is back: %q, %v", tok, err)
			}
			if got := srv.TokenFetches(); got != 1 {
				t.Errorf("token fetches = %d, want 1", got)
			}
		})
	}
}

// A token error while the store cannot drop the token is returned, not
// retried with what the store may still give back.
func TestSharedTokenDropError(t *testing.T) {
	srv := fakeAPI(t)
	store := newMemTokenStore()
	c := sharedClient(srv, store, nil)
	defer c.Close()
	ctx := deadline(t, 5*time.Second)
	tok, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	store.setFail(func(m, tok string) error {
		if m == "DropSharedToken" {
			return fmt.Errorf("redis: script failed for %s: %w", tok, errStoreDown)
		}
		return nil
	})
	srv.InvalidateTokens()
	err = c.SendCustom(ctx, textTo("u", "x"))
	if !errors.Is(err, errStoreDown) || !strings.Contains(err.Error(), "shared store") {
		t.Fatalf("send = %v, want the store's error", err)
	}
	if strings.Contains(err.Error(), tok) {
		t.Errorf("the error quotes the token: %v", err)
	}
	if got := count(srv, wechat.PathCustomSend); got != 1 {
		t.Errorf("calls = %d, want 1", got)
	}
}

// A token fetched but not put in the store serves this process, and the
// store's error does not quote it in the log.
func TestSharedTokenPutError(t *testing.T) {
	srv := fakeAPI(t)
	store := newMemTokenStore()
	store.fail = func(m, tok string) error {
		if m == "PutSharedToken" {
			return fmt.Errorf("redis: SET %s: %w", tok, errStoreDown)
		}
		return nil
	}
	sink, log := newLog()
	c := apiClient(srv, log, func(o *wechat.ClientOptions) { o.TokenStore = store })
	defer c.Close()
	ctx := deadline(t, 5*time.Second)
	tok, err := c.Token(ctx)
	if err != nil || tok == "" {
		t.Fatalf("Token = %q, %v; want the fetched token", tok, err)
	}
	if again, err := c.Token(ctx); err != nil || again != tok || srv.TokenFetches() != 1 {
		t.Errorf("second Token = %q, %v after %d fetches; want the cached token", again, err, srv.TokenFetches())
	}
	if got := store.kept(); got != "" {
		t.Errorf("store keeps %q", got)
	}
	lines := sink.lines(t, "access token fetched but not kept in the shared store; other processes will fetch their own")
	if len(lines) != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", len(lines), sink)
	}
	if strings.Contains(sink.String(), tok) || strings.Contains(sink.String(), srv.AppSecret) {
		t.Errorf("the log quotes the token or the secret:\n%s", sink)
	}
}

// A failed fetch gives the lock back, so another process tries at once
// rather than after the lock's hold; and the failing process's pause
// does not keep it from the token the other one put in the store.
func TestSharedTokenFailedFetch(t *testing.T) {
	srv := fakeAPI(t)
	srv.FailNext(wechat.PathStableToken, wechat.ErrCodeIPNotWhitelisted, 1)
	store := newMemTokenStore()
	ctx := deadline(t, 5*time.Second)
	a := sharedClient(srv, store, nil)
	defer a.Close()
	var ae *wechat.APIError
	if _, err := a.Token(ctx); !errors.As(err, &ae) || ae.Code != wechat.ErrCodeIPNotWhitelisted {
		t.Fatalf("Token = %v, want APIError 40164", err)
	}
	// Within a's pause: the failure again, without a fetch.
	if _, err := a.Token(ctx); !errors.As(err, &ae) || srv.TokenFetches() != 1 {
		t.Fatalf("Token in the pause = %v after %d fetches", err, srv.TokenFetches())
	}
	b := sharedClient(srv, store, nil)
	defer b.Close()
	tok, err := b.Token(ctx) // the 5s deadline is shorter than the lock's hold
	if err != nil {
		t.Fatalf("another process: %v", err)
	}
	if got, err := a.Token(ctx); err != nil || got != tok {
		t.Errorf("a in its pause: %q, %v; want the token b put in the store", got, err)
	}
	if got := srv.TokenFetches(); got != 2 {
		t.Errorf("token fetches = %d, want 2", got)
	}
}
