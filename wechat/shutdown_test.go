package wechat_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// Shutdown while producers are still enqueueing: everything accepted is
// delivered exactly once, and everything after it is refused.
func TestShutdownUnderLoadLosesNothing(t *testing.T) {
	srv := fakeAPI(t)
	srv.SetLatency(wechat.PathCustomSend, time.Millisecond)
	srv.FailNext(wechat.PathCustomSend, -1, 20) // some retries in the mix
	s, res := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil), Workers: 8, MaxAttempts: 10, QueueSize: 500})

	var mu sync.Mutex
	accepted := map[string]string{} // id → openid
	var wg sync.WaitGroup
	for p := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 400; i++ {
				openid := fmt.Sprintf("p%d-u%d", p, i%7)
				ids, err := s.Enqueue(textOut(openid, fmt.Sprint(i)))
				switch {
				case errors.Is(err, wechat.ErrSenderClosed):
					return
				case errors.Is(err, wechat.ErrQueueFull):
					time.Sleep(time.Millisecond)
					continue
				case err != nil:
					t.Errorf("enqueue: %v", err)
					return
				}
				mu.Lock()
				accepted[ids[0]] = openid
				mu.Unlock()
			}
		}()
	}
	// Let the producers get well ahead of the workers.
	if err := srv.WaitReceived(context.Background(), 100); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wg.Wait()

	if len(accepted) < 100 {
		t.Fatalf("only %d accepted; the test needs load", len(accepted))
	}
	res.wait(t, len(accepted))
	delivered := map[string]int{}
	for _, r := range srv.Accepted(wechat.PathCustomSend) {
		delivered[r.OpenID+"/"+r.Custom.Text.Content]++
	}
	for id := range accepted {
		st, ok := s.Status(id)
		if !ok || st.State != wechat.StateDelivered {
			t.Errorf("%s: %+v", id, st)
		}
		if r := res.get(id); len(r) != 1 {
			t.Errorf("%s: %d results, want 1", id, len(r))
		}
	}
	total := 0
	for key, n := range delivered {
		if n != 1 {
			t.Errorf("%s delivered %d times", key, n)
		}
		total += n
	}
	stats := s.Stats()
	if total != len(accepted) || stats.Delivered != int64(len(accepted)) || stats.Enqueued != int64(len(accepted)) || stats.Queued != 0 || stats.InFlight != 0 {
		t.Errorf("accepted %d, delivered %d, stats %+v", len(accepted), total, stats)
	}
}

// When Shutdown's deadline passes, what is left fails with reason
// "shutdown": every accepted message still has exactly one result.
func TestShutdownDeadlineFailsTheRest(t *testing.T) {
	srv := fakeAPI(t)
	srv.SetLatency(wechat.PathCustomSend, 300*time.Millisecond)
	s, res := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil), Workers: 2})
	var ids []string
	for i := range 10 {
		got, err := s.Enqueue(textOut(fmt.Sprintf("u%d", i%3), fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the deadline", err)
	}
	res.wait(t, len(ids))
	failed, cut := 0, 0
	for _, id := range ids {
		st, _ := s.Status(id)
		switch {
		case st.State == wechat.StateFailed && st.Reason == wechat.ReasonShutdown && st.Attempts == 0:
			failed++
		case st.State == wechat.StateFailed && st.Reason == wechat.ReasonShutdownInFlight && st.Attempts == 1:
			cut++ // on the wire when the deadline passed: may have been delivered
		case st.State == wechat.StateDelivered:
		default:
			t.Errorf("%s: %+v", id, st)
		}
		if r := res.get(id); len(r) != 1 {
			t.Errorf("%s: %d results", id, len(r))
		}
	}
	stats := s.Stats()
	if failed == 0 || cut > 2 || stats.Delivered+stats.Failed != int64(len(ids)) || stats.Queued != 0 {
		t.Errorf("failed %d, cut off %d (2 workers); stats %+v", failed, cut, stats)
	}
}

// Shutdown called twice at once while producers keep enqueueing: both
// return, nothing is accepted after the first, and every accepted message
// has exactly one result.
func TestShutdownTwiceDuringEnqueue(t *testing.T) {
	srv := fakeAPI(t)
	srv.SetLatency(wechat.PathCustomSend, time.Millisecond)
	s, res := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil), Workers: 4})
	var mu sync.Mutex
	var accepted []string
	var producers sync.WaitGroup
	for p := range 4 {
		producers.Add(1)
		go func() {
			defer producers.Done()
			for i := 0; ; i++ {
				ids, err := s.Enqueue(textOut(fmt.Sprintf("p%d-%d", p, i%5), fmt.Sprint(i)))
				if errors.Is(err, wechat.ErrSenderClosed) {
					return
				}
				if errors.Is(err, wechat.ErrQueueFull) {
					time.Sleep(time.Millisecond)
					continue
				}
				if err != nil {
					t.Errorf("enqueue: %v", err)
					return
				}
				mu.Lock()
				accepted = append(accepted, ids...)
				mu.Unlock()
			}
		}()
	}
	if err := srv.WaitReceived(context.Background(), 20); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for _, d := range []time.Duration{10 * time.Second, 20 * time.Millisecond} {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			errs <- s.Shutdown(ctx)
		}()
	}
	for range 2 {
		if err := <-errs; err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown: %v", err)
		}
	}
	producers.Wait()
	if _, err := s.Enqueue(textOut("late", "x")); !errors.Is(err, wechat.ErrSenderClosed) {
		t.Errorf("Enqueue after Shutdown: %v", err)
	}
	res.wait(t, len(accepted))
	for _, id := range accepted {
		if r := res.get(id); len(r) != 1 {
			t.Fatalf("%s: %d results, want 1", id, len(r))
		}
	}
	if st := s.Stats(); st.Delivered+st.Failed != int64(len(accepted)) || st.Queued != 0 || st.InFlight != 0 {
		t.Errorf("accepted %d, stats %+v", len(accepted), st)
	}
}

// A call that hangs (a send, or the token fetch before it) does not hold
// Shutdown past its deadline: the call is abandoned and its message
// fails, once: "shutdown in flight" when the send itself was cut off (it
// may have been delivered), "shutdown" when it never went out.
func TestShutdownAbandonsHungCalls(t *testing.T) {
	tests := []struct {
		api  string
		want []string // reasons of a, b (behind a), c
	}{
		{wechat.PathCustomSend, []string{wechat.ReasonShutdownInFlight, wechat.ReasonShutdown, wechat.ReasonShutdownInFlight}},
		{wechat.PathStableToken, []string{wechat.ReasonShutdown, wechat.ReasonShutdown, wechat.ReasonShutdown}},
	}
	for _, tt := range tests {
		api := tt.api
		t.Run(api, func(t *testing.T) {
			srv := fakeAPI(t)
			release := srv.Hold(api)
			defer release()
			// The client's own timeout is far beyond the deadline.
			c := apiClient(srv, nil, func(o *wechat.ClientOptions) { o.Timeout = time.Minute })
			s, res := startSender(t, wechat.SenderOptions{Client: c, Workers: 2})
			ids, _ := s.Enqueue(textOut("u1", "a"), textOut("u1", "b"), textOut("u2", "c"))
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Shutdown = %v, want the deadline", err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("Shutdown took %v", took)
			}
			res.wait(t, len(ids))
			for i, id := range ids {
				st, _ := s.Status(id)
				if r := res.get(id); len(r) != 1 || st.State != wechat.StateFailed || st.Reason != tt.want[i] {
					t.Errorf("message %d: %+v, %d results; want failed: %s", i, st, len(r), tt.want[i])
				}
			}
		})
	}
}

// A message waiting out a retry's backoff does not hold a worker: with
// one worker, another user's reply goes out meanwhile. Shutdown waits for
// the retry when it has time, and fails it with reason "shutdown" when
// it has not.
func TestRetryBackoffFreesTheWorker(t *testing.T) {
	tests := []struct {
		name     string
		deadline time.Duration
		want     []string // user:errcode of the calls, in order
		state    string
	}{
		{"drained", 10 * time.Second, []string{"a:-1", "b:0", "a:0"}, wechat.StateDelivered},
		{"deadline", 100 * time.Millisecond, []string{"a:-1", "b:0"}, wechat.StateFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeAPI(t)
			srv.FailNext(wechat.PathCustomSend, -1, 1)
			s, res := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil), Workers: 1,
				BaseBackoff: 400 * time.Millisecond, MaxBackoff: 400 * time.Millisecond})
			a, _ := s.Enqueue(textOut("a", "1"))
			if err := srv.WaitReceived(context.Background(), 1); err != nil {
				t.Fatal(err)
			}
			b, _ := s.Enqueue(textOut("b", "2"))
			res.wait(t, 1)
			if r := res.get(b[0]); len(r) != 1 || !r[0].Delivered {
				t.Fatalf("b: %+v, want delivered while a waits", r)
			}
			ctx, cancel := context.WithTimeout(context.Background(), tt.deadline)
			defer cancel()
			_ = s.Shutdown(ctx)
			res.wait(t, 2)
			var got []string
			for _, r := range srv.Received() {
				got = append(got, fmt.Sprintf("%s:%d", r.OpenID, r.ErrCode))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("calls = %v, want %v", got, tt.want)
			}
			st, _ := s.Status(a[0])
			if st.State != tt.state || st.Attempts != len(tt.want)-1 || len(res.get(a[0])) != 1 {
				t.Errorf("a: %+v, %d results", st, len(res.get(a[0])))
			}
			if tt.state == wechat.StateFailed && st.Reason != wechat.ReasonShutdown {
				t.Errorf("a: reason %q, want shutdown", st.Reason)
			}
			if stats := s.Stats(); stats.Queued != 0 || stats.InFlight != 0 || stats.Delivered+stats.Failed != 2 {
				t.Errorf("stats %+v", stats)
			}
		})
	}
}

// A retry whose backoff has ended but that no worker has taken yet (the
// one worker is stuck on a hung call) is failed with reason "shutdown"
// when the deadline passes, like everything else still waiting.
func TestShutdownDropsRetryDueButNotTaken(t *testing.T) {
	srv := fakeAPI(t)
	srv.FailNext(wechat.PathCustomSend, -1, 1)
	s, res := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil), Workers: 1,
		BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	a, _ := s.Enqueue(textOut("a", "1"))
	if err := srv.WaitReceived(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	release := srv.Hold(wechat.PathCustomSend)
	defer release()
	b, _ := s.Enqueue(textOut("b", "2"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.WaitPending(ctx, 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // a's backoff ends; the worker is still on b
	sctx, scancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer scancel()
	if err := s.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v", err)
	}
	res.wait(t, 2)
	for id, reason := range map[string]string{a[0]: wechat.ReasonShutdown, b[0]: wechat.ReasonShutdownInFlight} {
		st, _ := s.Status(id)
		if st.State != wechat.StateFailed || st.Reason != reason || len(res.get(id)) != 1 {
			t.Errorf("%s: %+v, %d results; want failed: %s", id, st, len(res.get(id)), reason)
		}
	}
	if st, _ := s.Status(a[0]); st.Attempts != 1 {
		t.Errorf("a: %d attempts, want the 1 made", st.Attempts)
	}
}
