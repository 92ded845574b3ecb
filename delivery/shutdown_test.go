package delivery_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
)

// Items accepted into a durable store survive the engine and the store
// being closed: a new engine on the reopened store delivers every one
// exactly once, each user's in acceptance order, whether the first
// engine never started or had its calls held at WeChat when it stopped.
func TestRestartResumesFromTheStore(t *testing.T) {
	tests := []struct {
		name string
		held bool
	}{
		{"engine not started", false},
		{"calls held at shutdown", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const users, per = 5, 10
			dir := t.TempDir()
			srv := fakeAPI(t)
			c := apiClient(t, srv, nil, nil)
			st1 := dirStore(t, dir)
			release := func() {}
			if tt.held {
				release = srv.Hold(wechat.PathCustomSend)
			}
			defer release()
			e1, res1 := newEngine(t, delivery.Options{Client: c, Store: st1}, nil)
			if tt.held {
				e1.Start()
			}
			var ids []string
			for i := range per {
				for u := range users {
					ids = append(ids, accept(t, e1, textOut(fmt.Sprintf("u%d", u), fmt.Sprint(i)))...)
				}
			}
			if tt.held {
				wctx, wcancel := context.WithTimeout(context.Background(), waitLimit)
				defer wcancel()
				if err := srv.WaitPending(wctx, users); err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				if err := e1.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Shutdown = %v, want the deadline", err)
				}
				// The fake sees its held calls' clients go away; only then
				// is the hold lifted, so that none is carried out.
				waitFor(t, "the cut-off calls to be abandoned", func() bool { return abandoned(srv) == users })
				release()
			} else if err := e1.Shutdown(context.Background()); err != nil {
				t.Fatalf("Shutdown = %v", err)
			}
			if n := res1.count(); n != 0 {
				t.Fatalf("%d items ended by the first engine", n)
			}
			if s := e1.Stats(); s.Failed != 0 || s.Delivered != 0 || s.InFlight != 0 {
				t.Errorf("first engine's stats = %+v", s)
			}
			for _, id := range ids {
				if s := status(t, e1, id); s.State != store.StateQueued {
					t.Fatalf("%s after the shutdown: %+v", id, s)
				}
			}
			if err := st1.Close(); err != nil {
				t.Fatal(err)
			}

			st2 := dirStore(t, dir)
			defer st2.Close()
			if n, err := st2.Pending(context.Background()); err != nil || n != len(ids) {
				t.Fatalf("reopened store: %d pending, %v; want %d", n, err, len(ids))
			}
			e2, res2 := startEngine(t, delivery.Options{Client: c, Store: st2})
			res2.wait(t, len(ids))
			for _, id := range ids {
				if r := res2.get(id); len(r) != 1 || !r[0].Delivered {
					t.Errorf("%s: results %+v", id, r)
				}
				if s := status(t, e2, id); s.State != store.StateDelivered {
					t.Errorf("%s: %+v", id, s)
				}
			}
			for u := range users {
				if got := texts(srv, fmt.Sprintf("u%d", u)); !reflect.DeepEqual(got, seq(per)) {
					t.Errorf("u%d received %v, want %v", u, got, seq(per))
				}
			}
			if got := len(srv.Accepted(wechat.PathCustomSend)); got != len(ids) {
				t.Errorf("fake accepted %d sends, want %d", got, len(ids))
			}
			if err := e2.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Shutdown whose ctx ends with calls still at WeChat cuts them off and
// returns ctx.Err(); nothing is failed, and the next engine on the store
// delivers everything. With time enough, Shutdown waits for the calls
// under way and leaves the rest queued.
func TestShutdownWithCallsInFlight(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		srv := fakeAPI(t)
		release := srv.Hold(wechat.PathCustomSend)
		defer release()
		// The client's own timeout is far beyond the deadline.
		c := apiClient(t, srv, nil, func(o *wechat.ClientOptions) { o.Timeout = time.Minute })
		st := memStore(t)
		e, res := startEngine(t, delivery.Options{Client: c, Store: st})
		ids := accept(t, e, textOut("u1", "a"), textOut("u1", "b"), textOut("u2", "c"))
		wctx, wcancel := context.WithTimeout(context.Background(), waitLimit)
		defer wcancel()
		if err := srv.WaitPending(wctx, 2); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := e.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want the deadline", err)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("Shutdown took %v", took)
		}
		for _, id := range ids {
			if s := status(t, e, id); s.State != store.StateQueued || s.Reason != "" {
				t.Errorf("%s: %+v, want still queued", id, s)
			}
		}
		if s := e.Stats(); s.Failed != 0 || s.Delivered != 0 || s.InFlight != 0 || res.count() != 0 {
			t.Errorf("stats = %+v, %d results", s, res.count())
		}
		if n, _ := e.Pending(context.Background()); n != 3 {
			t.Errorf("Pending = %d, want 3", n)
		}
		waitFor(t, "the cut-off calls to be abandoned", func() bool { return abandoned(srv) == 2 })
		release()

		e2, res2 := startEngine(t, delivery.Options{Client: c, Store: st})
		res2.wait(t, 3)
		for _, id := range ids {
			if s := status(t, e2, id); s.State != store.StateDelivered {
				t.Errorf("%s: %+v", id, s)
			}
		}
		// The cut-off call counts as an attempt.
		if s := status(t, e2, ids[0]); s.Attempts != 2 {
			t.Errorf("a: %+v, want 2 attempts", s)
		}
		if got := texts(srv, "u1"); !reflect.DeepEqual(got, []string{"a", "b"}) {
			t.Errorf("u1 received %v", got)
		}
		if got := texts(srv, "u2"); !reflect.DeepEqual(got, []string{"c"}) {
			t.Errorf("u2 received %v", got)
		}
	})

	t.Run("token fetch held", func(t *testing.T) {
		srv := fakeAPI(t)
		release := srv.Hold(wechat.PathStableToken)
		defer release()
		c := apiClient(t, srv, nil, func(o *wechat.ClientOptions) { o.Timeout = time.Minute })
		st := memStore(t)
		e, res := startEngine(t, delivery.Options{Client: c, Store: st})
		ids := accept(t, e, textOut("u1", "a"), textOut("u1", "b"), textOut("u2", "c"))
		waitFor(t, "the token fetch", func() bool { return srv.TokenFetches() == 1 })
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := e.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want the deadline", err)
		}
		for _, id := range ids {
			if s := status(t, e, id); s.State != store.StateQueued {
				t.Errorf("%s: %+v, want still queued", id, s)
			}
		}
		if res.count() != 0 || count(srv, wechat.PathCustomSend) != 0 {
			t.Errorf("%d results, %d sends", res.count(), count(srv, wechat.PathCustomSend))
		}
		release()
		e2, res2 := startEngine(t, delivery.Options{Client: c, Store: st})
		res2.wait(t, 3)
		for _, id := range ids {
			if s := status(t, e2, id); s.State != store.StateDelivered {
				t.Errorf("%s: %+v", id, s)
			}
		}
		if got := texts(srv, "u1"); !reflect.DeepEqual(got, []string{"a", "b"}) {
			t.Errorf("u1 received %v", got)
		}
	})

	t.Run("drained", func(t *testing.T) {
		srv := fakeAPI(t)
		release := srv.Hold(wechat.PathCustomSend)
		defer release()
		c := apiClient(t, srv, nil, nil)
		st := memStore(t)
		e, _ := startEngine(t, delivery.Options{Client: c, Store: st})
		ids := accept(t, e, textOut("u1", "a"), textOut("u1", "b"), textOut("u2", "c"))
		wctx, wcancel := context.WithTimeout(context.Background(), waitLimit)
		defer wcancel()
		if err := srv.WaitPending(wctx, 2); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			done <- e.Shutdown(ctx)
		}()
		release()
		if err := <-done; err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
		// What was under way when Shutdown returned has ended.
		for _, id := range []string{ids[0], ids[2]} {
			if s := status(t, e, id); s.State != store.StateDelivered {
				t.Errorf("%s: %+v, want delivered before Shutdown returned", id, s)
			}
		}
		if _, err := e.Accept(context.Background(), delivery.Request{Items: []wechat.Outgoing{textOut("u3", "x")}}); !errors.Is(err, delivery.ErrClosed) {
			t.Errorf("Accept after Shutdown: %v", err)
		}
		e2, _ := startEngine(t, delivery.Options{Client: c, Store: st})
		waitFor(t, "b to be delivered", func() bool { return status(t, e2, ids[1]).State == store.StateDelivered })
		if got := texts(srv, "u1"); !reflect.DeepEqual(got, []string{"a", "b"}) {
			t.Errorf("u1 received %v", got)
		}
	})
}

// A message waiting out a retry's backoff holds no send slot: with one,
// another user's reply goes out meanwhile. Shutdown does not wait for
// the retry, nor fail it: it stays queued, and the next engine sends it.
func TestRetryBackoffFreesTheSlot(t *testing.T) {
	srv := fakeAPI(t)
	srv.FailNext(wechat.PathCustomSend, -1, 1)
	st := memStore(t)
	c := apiClient(t, srv, nil, nil)
	e, res := startEngine(t, delivery.Options{Client: c, Store: st, InFlight: 1,
		BaseBackoff: time.Hour, MaxBackoff: time.Hour})
	a := accept(t, e, textOut("a", "1"))
	wctx, wcancel := context.WithTimeout(context.Background(), waitLimit)
	defer wcancel()
	if err := srv.WaitReceived(wctx, 1); err != nil {
		t.Fatal(err)
	}
	b := accept(t, e, textOut("b", "2"))
	res.wait(t, 1)
	if r := res.get(b[0]); len(r) != 1 || !r[0].Delivered {
		t.Fatalf("b: %+v, want delivered while a waits", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	sa := status(t, e, a[0])
	if sa.State != store.StateQueued || sa.Attempts != 1 || sa.LastError == "" || !sa.NextAt.After(time.Now().Add(29*time.Minute)) {
		t.Errorf("a: %+v, want queued for its retry in about an hour", sa)
	}
	if s := e.Stats(); s.Retried != 1 || s.Delivered != 1 || s.Failed != 0 || s.InFlight != 0 {
		t.Errorf("stats = %+v", s)
	}
	var got []string
	for _, r := range srv.Received() {
		got = append(got, fmt.Sprintf("%s:%d", r.OpenID, r.ErrCode))
	}
	if want := []string{"a:-1", "b:0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
}

// Shutdown while producers are still accepting: everything accepted is
// delivered exactly once, by this engine or the next one on the store,
// and everything after Shutdown is refused.
func TestShutdownUnderLoadLosesNothing(t *testing.T) {
	srv := fakeAPI(t)
	srv.SetLatency(wechat.PathCustomSend, time.Millisecond)
	srv.FailNext(wechat.PathCustomSend, -1, 20) // some retries in the mix
	st := memStore(t)
	c := apiClient(t, srv, nil, nil)
	res := newResults()
	e, _ := newEngine(t, delivery.Options{Client: c, Store: st, InFlight: 8}, res)
	e.Start()

	var mu sync.Mutex
	accepted := map[string]string{} // id → openid/content
	var wg sync.WaitGroup
	for p := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 400; i++ {
				openid, content := fmt.Sprintf("p%d-u%d", p, i%7), strconv.Itoa(i)
				a, err := e.Accept(context.Background(), delivery.Request{Items: []wechat.Outgoing{textOut(openid, content)}})
				switch {
				case errors.Is(err, delivery.ErrClosed):
					return
				case err != nil:
					t.Errorf("accept: %v", err)
					return
				}
				mu.Lock()
				accepted[a.IDs[0]] = openid + "/" + content
				mu.Unlock()
			}
		}()
	}
	// Let the producers get well ahead of the sends.
	wctx, wcancel := context.WithTimeout(context.Background(), waitLimit)
	defer wcancel()
	if err := srv.WaitReceived(wctx, 100); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wg.Wait()
	if len(accepted) < 100 {
		t.Fatalf("only %d accepted; the test needs load", len(accepted))
	}
	first := e.Stats()

	e2, _ := newEngine(t, delivery.Options{Client: c, Store: st, InFlight: 8}, res)
	e2.Start()
	res.wait(t, len(accepted))
	delivered := map[string]int{}
	for _, r := range srv.Accepted(wechat.PathCustomSend) {
		delivered[r.OpenID+"/"+r.Custom.Text.Content]++
	}
	for id, key := range accepted {
		if r := res.get(id); len(r) != 1 || !r[0].Delivered {
			t.Errorf("%s: results %+v", id, r)
		}
		if delivered[key] != 1 {
			t.Errorf("%s delivered %d times", key, delivered[key])
		}
	}
	if len(delivered) != len(accepted) {
		t.Errorf("fake received %d distinct messages, %d accepted", len(delivered), len(accepted))
	}
	second := e2.Stats()
	if first.Accepted != int64(len(accepted)) || first.Delivered+second.Delivered != int64(len(accepted)) ||
		first.Failed+second.Failed != 0 || first.InFlight != 0 {
		t.Errorf("accepted %d; stats %+v then %+v", len(accepted), first, second)
	}
	if n, _ := e2.Pending(context.Background()); n != 0 {
		t.Errorf("Pending = %d", n)
	}
}

// Many users, a mix of transient and final answers, retries parked and
// resumed, and a Shutdown given time enough or cut short, then a new engine
// on the store: every accepted item has exactly one result, what WeChat
// accepted last was reported delivered, and each user's replies arrive
// in order; only a call cut off by the deadline may be sent again.
func TestMixedFailuresAcrossRestart(t *testing.T) {
	tests := []struct {
		name     string
		deadline time.Duration
	}{
		{"waited for", waitLimit},
		{"cut short", 30 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const users, per, inFlight = 20, 10, 4
			srv := fakeAPI(t)
			srv.SetLatency(wechat.PathCustomSend, 200*time.Microsecond)
			// One answer per call, in turn: busy, fine, busy twice, the
			// per-interaction cap (final), fine...
			for range 40 {
				for _, code := range []int{-1, 0, -1, -1, 0, 45047, 0, 0} {
					srv.FailNext(wechat.PathCustomSend, code, 1)
				}
			}
			st := memStore(t)
			c := apiClient(t, srv, nil, nil)
			res := newResults()
			e, _ := newEngine(t, delivery.Options{Client: c, Store: st, InFlight: inFlight}, res)
			e.Start()
			var ids []string
			byCall := map[string]string{} // openid/content → id
			for i := range per {
				for u := range users {
					openid, content := fmt.Sprintf("u%02d", u), strconv.Itoa(i)
					got := accept(t, e, textOut(openid, content))
					ids = append(ids, got...)
					byCall[openid+"/"+content] = got[0]
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), tt.deadline)
			defer cancel()
			err := e.Shutdown(ctx)
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Shutdown = %v", err)
			}
			first := e.Stats()
			e2, _ := newEngine(t, delivery.Options{Client: c, Store: st, InFlight: inFlight}, res)
			e2.Start()
			res.wait(t, len(ids))
			delivered := 0
			for _, id := range ids {
				r := res.get(id)
				if len(r) != 1 {
					t.Fatalf("%s: %d results", id, len(r))
				}
				if r[0].Delivered {
					delivered++
				} else if r[0].ErrCode != 45047 {
					t.Errorf("%s failed: %+v", id, r[0])
				}
			}
			for u := range users {
				got := texts(srv, fmt.Sprintf("u%02d", u))
				for i := 1; i < len(got); i++ {
					a, _ := strconv.Atoi(got[i-1])
					b, _ := strconv.Atoi(got[i])
					if b < a {
						t.Errorf("u%02d received %v: out of order", u, got)
					}
				}
			}
			// The calls of each item, in order. A call WeChat accepted is
			// its item's last unless Shutdown cut it off on the way back:
			// then the item was sent again (the one duplicate the outbox
			// allows), and its result is the later call's.
			calls := map[string][]bool{} // openid/content → accepted, per call
			for _, r := range srv.Received() {
				// An abandoned call is recorded undecoded.
				var m wechat.CustomMessage
				if err := json.Unmarshal(r.Body, &m); err != nil || m.Text == nil {
					t.Fatalf("call %+v: %v", r, err)
				}
				key := m.ToUser + "/" + m.Text.Content
				calls[key] = append(calls[key], r.OK())
			}
			resent := 0
			for key, oks := range calls {
				for _, ok := range oks[:len(oks)-1] {
					if ok {
						resent++
					}
				}
				r := res.get(byCall[key])[0]
				if last := oks[len(oks)-1]; last != r.Delivered {
					t.Errorf("%s: last call accepted %v, but reported %+v", key, last, r)
				}
			}
			second := e2.Stats()
			if first.Delivered+second.Delivered != int64(delivered) || first.Failed+second.Failed != int64(len(ids)-delivered) ||
				len(srv.Accepted(wechat.PathCustomSend)) != delivered+resent || resent > inFlight {
				t.Errorf("delivered %d, %d accepted and sent again (%d in flight), fake accepted %d, of %d; stats %+v then %+v",
					delivered, resent, inFlight, len(srv.Accepted(wechat.PathCustomSend)), len(ids), first, second)
			}
			if first.Retried+second.Retried == 0 {
				t.Error("no retries: the test lost its point")
			}
			if tt.deadline == waitLimit && (err != nil || resent != 0) {
				t.Errorf("Shutdown with time enough = %v, %d sent again", err, resent)
			}
		})
	}
}

// Shutdown called twice at once while producers keep accepting: both
// return, nothing is accepted after the first, nothing is failed, and
// the next engine on the store ends every accepted item once.
func TestShutdownTwiceDuringAccept(t *testing.T) {
	srv := fakeAPI(t)
	srv.SetLatency(wechat.PathCustomSend, time.Millisecond)
	st := memStore(t)
	c := apiClient(t, srv, nil, nil)
	res := newResults()
	e, _ := newEngine(t, delivery.Options{Client: c, Store: st, InFlight: 4}, res)
	e.Start()
	var mu sync.Mutex
	var accepted []string
	var producers sync.WaitGroup
	for p := range 4 {
		producers.Add(1)
		go func() {
			defer producers.Done()
			for i := 0; ; i++ {
				a, err := e.Accept(context.Background(), delivery.Request{Items: []wechat.Outgoing{textOut(fmt.Sprintf("p%d-%d", p, i%5), fmt.Sprint(i))}})
				if errors.Is(err, delivery.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("accept: %v", err)
					return
				}
				mu.Lock()
				accepted = append(accepted, a.IDs...)
				mu.Unlock()
			}
		}()
	}
	wctx, wcancel := context.WithTimeout(context.Background(), waitLimit)
	defer wcancel()
	if err := srv.WaitReceived(wctx, 20); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for _, d := range []time.Duration{10 * time.Second, 20 * time.Millisecond} {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			errs <- e.Shutdown(ctx)
		}()
	}
	for range 2 {
		if err := <-errs; err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown: %v", err)
		}
	}
	producers.Wait()
	if _, err := e.Accept(context.Background(), delivery.Request{Items: []wechat.Outgoing{textOut("late", "x")}}); !errors.Is(err, delivery.ErrClosed) {
		t.Errorf("Accept after Shutdown: %v", err)
	}
	if s := e.Stats(); s.Failed != 0 || s.InFlight != 0 || s.Accepted != int64(len(accepted)) {
		t.Errorf("accepted %d, stats %+v", len(accepted), s)
	}
	e2, _ := newEngine(t, delivery.Options{Client: c, Store: st, InFlight: 4}, res)
	e2.Start()
	res.wait(t, len(accepted))
	for _, id := range accepted {
		if r := res.get(id); len(r) != 1 || !r[0].Delivered {
			t.Fatalf("%s: results %+v, want one: delivered", id, r)
		}
	}
	if n, _ := e2.Pending(context.Background()); n != 0 {
		t.Errorf("Pending = %d", n)
	}
}
