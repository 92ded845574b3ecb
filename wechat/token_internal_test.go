package wechat

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestTokenTTL(t *testing.T) {
	tests := []struct {
		name      string
		expiresIn int64
		given     bool
		want      time.Duration
	}{
		{"7200s", 7200, true, 7200*time.Second - 5*time.Minute},
		{"a stable token near its end keeps a fifth", 300, true, 240 * time.Second},
		{"one second: used, briefly, rather than never", 1, true, 800 * time.Millisecond},
		{"zero: about to expire, a moment only", 0, true, time.Second},
		{"negative: the same", -5, true, time.Second},
		{"missing: assume 5 minutes", 0, false, 4 * time.Minute},
		{"absurd: capped, no overflow", 1 << 40, true, 24*time.Hour - 5*time.Minute},
	}
	for _, tt := range tests {
		if got := tokenTTL(tt.expiresIn, tt.given); got != tt.want {
			t.Errorf("%s: tokenTTL(%d, %v) = %v, want %v", tt.name, tt.expiresIn, tt.given, got, tt.want)
		}
	}
}

// What the token APIs answer for expires_in decides how long the token
// is used before the next fetch.
func TestTokenExpiresInAnswers(t *testing.T) {
	tests := []struct {
		answer string
		want   time.Duration
	}{
		{`{"access_token":"T","expires_in":7200}`, 7200*time.Second - 5*time.Minute},
		{`{"access_token":"T","expires_in":"7200"}`, 7200*time.Second - 5*time.Minute},
		{`{"access_token":"T","expires_in":0}`, time.Second},
		{`{"access_token":"T"}`, 4 * time.Minute},
	}
	for _, tt := range tests {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(tt.answer))
		}))
		c := NewClient(ClientOptions{BaseURL: srv.URL, AppID: "wx1", AppSecret: "s", Logger: slog.New(slog.DiscardHandler)})
		tok, ttl, err := c.fetchToken(context.Background())
		srv.Close()
		if err != nil || tok != "T" || ttl != tt.want {
			t.Errorf("%s: %q, %v, %v; want T for %v", tt.answer, tok, ttl, err, tt.want)
		}
	}
}

// The pause after failed fetches doubles from a second, up to 30s for
// failures that may pass by themselves and 5 minutes for ones that need
// an operator; a fetched token ends it.
func TestTokenFailurePause(t *testing.T) {
	transient := &APIError{Code: ErrCodeSystemBusy, API: PathStableToken}
	final := &APIError{Code: ErrCodeIPNotWhitelisted, API: PathStableToken}
	tests := []struct {
		name string
		err  error
		want []time.Duration
	}{
		{"transient", transient, []time.Duration{1, 2, 4, 8, 16, 30, 30}},
		{"final", final, []time.Duration{1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300}},
	}
	now := time.Now()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTokenCache()
			for i, w := range tt.want {
				if got := tc.fail(tt.err, now); got != w*time.Second {
					t.Errorf("failure %d: pause %v, want %v", i+1, got, w*time.Second)
				}
			}
			last := tt.want[len(tt.want)-1] * time.Second
			if err := tc.failure(now.Add(last - time.Millisecond)); err != tt.err {
				t.Errorf("within the pause: %v, want the failure", err)
			}
			if err := tc.failure(now.Add(last)); err != nil {
				t.Errorf("after the pause: %v, want none", err)
			}
			tc.set("T", time.Hour)
			if err := tc.failure(now); err != nil || tc.failures != 0 {
				t.Errorf("after a fetched token: %v, %d failures", err, tc.failures)
			}
		})
	}
}

// Once the pause is over the next caller fetches again, and a working
// token API ends the failures.
func TestTokenFetchedAgainAfterPause(t *testing.T) {
	var calls, failing atomic.Int64
	failing.Store(1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if failing.Load() == 1 {
			_, _ = w.Write([]byte(`{"errcode":40164,"errmsg":"invalid ip 10.0.0.1, not in whitelist"}`))
			return
		}
		_, _ = w.Write([]byte(`{"access_token":"TOK","expires_in":7200}`))
	}))
	defer srv.Close()
	c := NewClient(ClientOptions{BaseURL: srv.URL, AppID: "wx1", AppSecret: "s", Logger: slog.New(slog.DiscardHandler)})
	for range 3 {
		_, err := c.Token(context.Background())
		var ae *APIError
		if !errors.As(err, &ae) || ae.Code != ErrCodeIPNotWhitelisted {
			t.Fatalf("err = %v, want APIError 40164", err)
		}
	}
	if got := calls.Load(); got != 1 {
		t.Fatalf("calls = %d during the pause, want 1", got)
	}
	failing.Store(0)
	c.tokens.mu.Lock()
	c.tokens.failUntil = time.Now() // the pause ends
	c.tokens.mu.Unlock()
	tok, err := c.Token(context.Background())
	if err != nil || tok != "TOK" || calls.Load() != 2 {
		t.Fatalf("after the pause: %q, %v, %d calls", tok, err, calls.Load())
	}
	if c.tokens.failure(time.Now()) != nil {
		t.Error("the failure outlived a fetched token")
	}
}

// A token fetch outlives the caller that started it (others may wait for
// it), but not Close: no goroutine is left calling WeChat after it.
func TestCloseAbortsSharedCalls(t *testing.T) {
	aborted, quit := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // so that the server notices the client leave
		select {                           // never answers
		case <-r.Context().Done():
			close(aborted)
		case <-quit: // the test failed
		}
	}))
	defer srv.Close()
	defer close(quit)
	c := NewClient(ClientOptions{BaseURL: srv.URL, AppID: "wx1", AppSecret: "s", Timeout: time.Minute, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Token(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Token = %v, want the caller's deadline", err)
	}
	select {
	case <-aborted:
		t.Fatal("the fetch stopped with its first caller")
	case <-time.After(100 * time.Millisecond):
	}
	c.Close()
	select {
	case <-aborted:
	case <-time.After(5 * time.Second):
		t.Fatal("the fetch outlived Close")
	}
	if err := c.tokens.failure(time.Now()); err != nil {
		t.Errorf("Close left a failure pause: %v", err)
	}
}

// TestRefusedReplacementPauses: a call whose replacement token is refused
// too gets the pause, never a refetch it cannot make. In a burst, another
// call may drop the shared token while this one's replacement (which
// stable_token can answer the same as the token refused) is on its way;
// the call then saw "the token already replaced, the cache holding none":
// a refetch, which on its second attempt it returned as a final 40001 —
// a reply the outbox would have recorded as failed (CI, once, in
// TestTokenRefusedBurstOnePause).
func TestRefusedReplacementPauses(t *testing.T) {
	now := time.Now()
	refused := &APIError{Code: ErrCodeInvalidCredential}
	var r refusals
	if refetch, pause, _ := r.refused(refused, "T0", "", now, false); !refetch || pause != nil {
		t.Fatalf("first refusal: refetch %v, pause %v; want a refetch", refetch, pause)
	}
	// Another call of the burst, set out with T0: it takes the
	// replacement.
	if refetch, _, _ := r.refused(refused, "T0", "", now, false); !refetch {
		t.Fatal("a refusal of the token already replaced, in its burst: want a refetch")
	}
	// The replacement came back as T0, and another call dropped it.
	refetch, pause, began := r.refused(refused, "T0", "", now, true)
	if refetch || pause == nil || !began {
		t.Fatalf("the replacement refused: refetch %v, pause %v, began %v; want a pause that begins", refetch, pause, began)
	}
	if !pause.Until.Equal(now.Add(tokenRefusedPause)) {
		t.Errorf("pause until %s, want %s", pause.Until, now.Add(tokenRefusedPause))
	}
	// A replacement refused long after the last refetch is paused too.
	var late refusals
	late.refused(refused, "T0", "", now, false)
	if refetch, pause, _ := late.refused(refused, "T1", "T1", now.Add(2*tokenRefetchMin), true); refetch || pause == nil {
		t.Errorf("a replacement refused after %v: refetch %v, pause %v; want a pause", 2*tokenRefetchMin, refetch, pause)
	}
}
