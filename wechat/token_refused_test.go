package wechat_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// testClock is a clock a test moves by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// WeChat refusing every token (40001 to every call) must not set off a
// fetch per message: one refetch, then a pause of every call, without a
// fetch, with one log line; the pause doubles while it goes on, with one
// refetch at each end, and the errors are retryable, so the outbox keeps
// the messages.
func TestTokenRefusedPersistentlyPauses(t *testing.T) {
	for _, mode := range tokenModes {
		t.Run(mode.name, func(t *testing.T) {
			srv := fakeAPI(t)
			clk := &testClock{now: time.Now()}
			sink, log := newLog()
			c := apiClient(srv, log, func(o *wechat.ClientOptions) { o.UseLegacyToken = mode.legacy; o.Now = clk.Now })
			defer c.Close()
			// Four refusals: two before the first pause, two after it.
			srv.FailNext(wechat.PathCustomSend, 40001, 4)
			ctx := context.Background()
			for i := range 100 {
				err := c.SendCustom(ctx, textTo("u", "x"))
				var refused *wechat.TokenRefusedError
				if !errors.As(err, &refused) || !wechat.Retryable(err) {
					t.Fatalf("send %d: %v, want a retryable TokenRefusedError", i, err)
				}
			}
			if got := srv.TokenFetches(); got != 2 {
				t.Errorf("token fetches for 100 messages = %d, want 2 (the first and one refetch)", got)
			}
			if got := count(srv, wechat.PathCustomSend); got != 2 {
				t.Errorf("calls = %d, want 2: the paused ones make none", got)
			}
			// Still paused a moment later: no call, no fetch.
			clk.Advance(30 * time.Second)
			if err := c.SendCustom(ctx, textTo("u", "x")); !wechat.Retryable(err) || count(srv, wechat.PathCustomSend) != 2 {
				t.Fatalf("send during the pause: %v, %d calls", err, count(srv, wechat.PathCustomSend))
			}
			if n := strings.Count(sink.String(), "WeChat refuses the access tokens it issued"); n != 1 {
				t.Errorf("%d pause log lines, want 1:\n%s", n, sink.String())
			}
			if st := c.TokenStats(); !st.Paused || st.Fetches != 2 || st.Refusals != 2 {
				t.Errorf("TokenStats = %+v, want paused, 2 fetches, 2 refusals", st)
			}

			// The pause ends after a minute: one refetch, refused again,
			// and a pause of two minutes.
			clk.Advance(30*time.Second + time.Second)
			var refused *wechat.TokenRefusedError
			if err := c.SendCustom(ctx, textTo("u", "x")); !errors.As(err, &refused) {
				t.Fatalf("send after the pause: %v", err)
			}
			if got := srv.TokenFetches(); got != 3 {
				t.Errorf("token fetches after the first pause = %d, want 3", got)
			}
			if d := refused.Until.Sub(clk.Now()); d != 2*time.Minute {
				t.Errorf("second pause %v, want 2m", d)
			}

			// WeChat takes tokens again: calls go through, and the pause
			// is over.
			clk.Advance(2*time.Minute + time.Second)
			if err := c.SendCustom(ctx, textTo("u", "ok")); err != nil {
				t.Fatalf("send once WeChat takes tokens: %v", err)
			}
			if st := c.TokenStats(); st.Paused {
				t.Errorf("TokenStats = %+v, want not paused", st)
			}
		})
	}
}

// A burst of calls refused together — they set out with the same token —
// starts one pause of one minute, with one log line: the burst does not
// lengthen its own pause, and none of its calls fails for good.
func TestTokenRefusedBurstOnePause(t *testing.T) {
	srv := fakeAPI(t)
	clk := &testClock{now: time.Now()}
	sink, log := newLog()
	c := apiClient(srv, log, func(o *wechat.ClientOptions) { o.Now = clk.Now })
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Token(ctx); err != nil {
		t.Fatal(err)
	}
	srv.FailNext(wechat.PathCustomSend, 40001, 1_000_000)
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = c.SendCustom(ctx, textTo("u", "x")) })
	}
	wg.Wait()
	var until time.Time
	for i, err := range errs {
		var refused *wechat.TokenRefusedError
		if !errors.As(err, &refused) {
			t.Fatalf("call %d: %v, want a TokenRefusedError (retryable), not a final 40001", i, err)
		}
		if until.IsZero() {
			until = refused.Until
		} else if !refused.Until.Equal(until) {
			t.Errorf("call %d paused until %s, another until %s: the burst lengthened its pause", i, refused.Until, until)
		}
	}
	if d := until.Sub(clk.Now()); d != time.Minute {
		t.Errorf("pause %v, want 1m", d)
	}
	if k := strings.Count(sink.String(), "WeChat refuses the access tokens it issued"); k != 1 {
		t.Errorf("%d pause log lines for one burst, want 1", k)
	}
}
