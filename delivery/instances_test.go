package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
)

// Instances sharing a store send from one outbox: each item once, each
// user's in order, whichever instance accepted or sent it.
func TestInstancesShareTheOutbox(t *testing.T) {
	const users, per = 20, 5
	srv := fakeAPI(t)
	srv.SetLatency(wechat.PathCustomSend, time.Millisecond)
	srv.FailNext(wechat.PathCustomSend, -1, 10)
	st := memStore(t)
	c := apiClient(t, srv, nil, nil)
	res := newResults()
	e1, _ := newEngine(t, delivery.Options{Client: c, Store: st, InFlight: 4}, res)
	e2, _ := newEngine(t, delivery.Options{Client: c, Store: st, InFlight: 4}, res)
	e1.Start()
	e2.Start()
	var ids []string
	for i := range per {
		for u := range users {
			e := e1
			if u%2 == 1 {
				e = e2
			}
			ids = append(ids, accept(t, e, textOut(fmt.Sprintf("u%02d", u), fmt.Sprint(i)))...)
		}
	}
	res.wait(t, len(ids))
	for _, id := range ids {
		if r := res.get(id); len(r) != 1 || !r[0].Delivered {
			t.Errorf("%s: results %+v", id, r)
		}
	}
	for u := range users {
		if got := texts(srv, fmt.Sprintf("u%02d", u)); !reflect.DeepEqual(got, seq(per)) {
			t.Errorf("u%02d received %v", u, got)
		}
	}
	s1, s2 := e1.Stats(), e2.Stats()
	if s1.Delivered+s2.Delivered != int64(len(ids)) || s1.Accepted+s2.Accepted != int64(len(ids)) {
		t.Errorf("stats %+v and %+v", s1, s2)
	}
	t.Logf("delivered by the instances: %d and %d", s1.Delivered, s2.Delivered)
}

// A claim whose lease ran out while its call was at WeChat is taken by
// another instance; the first learns it when it records the outcome and
// reports nothing. The message is sent twice, the duplicate the outbox
// allows, and ends once.
func TestLeaseRunsOutDuringTheCall(t *testing.T) {
	sink, log := newLog()
	srv := fakeAPI(t)
	release := srv.Hold(wechat.PathCustomSend)
	defer release()
	c := apiClient(t, srv, nil, func(o *wechat.ClientOptions) { o.Timeout = time.Minute })
	st := memStore(t)
	clk := newClock()
	res := newResults()
	// e1 does not look for work by itself again before e2 has the lane:
	// its one slot is taken by the held send, and it polls once an hour.
	// (With a slot free, its dispatcher claims again after its first
	// claim, and under load that could come after the clock moved on:
	// e1 took the lane back and delivered, a flake of 1 in 50.)
	e1, _ := newEngine(t, delivery.Options{Client: c, Store: st, Now: clk.Now, Lease: time.Minute, Logger: log, PollEvery: time.Hour, InFlight: 1}, res)
	e1.Start()
	ids := accept(t, e1, textOut("u", "x"))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := srv.WaitPending(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute)
	e2, _ := newEngine(t, delivery.Options{Client: c, Store: st, Now: clk.Now, Lease: time.Minute}, res)
	e2.Start()
	if err := srv.WaitPending(ctx, 2); err != nil {
		t.Fatal(err)
	}
	release()
	res.wait(t, 1)
	waitFor(t, "the first instance to find its lease lost", func() bool {
		return len(sink.lines(t, "outbox: lease lost before the outcome was recorded; another claim has the message")) == 1
	})
	waitFor(t, "the sends to end", func() bool { return e1.Stats().InFlight == 0 && e2.Stats().InFlight == 0 })
	if r := res.get(ids[0]); len(r) != 1 || !r[0].Delivered {
		t.Errorf("results %+v, want one: delivered", r)
	}
	if s1, s2 := e1.Stats(), e2.Stats(); s1.Delivered != 0 || s2.Delivered != 1 {
		t.Errorf("stats %+v and %+v", s1, s2)
	}
	if got := len(srv.Accepted(wechat.PathCustomSend)); got != 2 {
		t.Errorf("sent %d times, want twice", got)
	}
	if s := status(t, e1, ids[0]); s.State != store.StateDelivered {
		t.Errorf("status %+v", s)
	}
}

// A store that cannot record a batch is the caller's 503: Accept says
// ErrUnavailable and keeps the store's error.
func TestAcceptStoreUnavailable(t *testing.T) {
	srv := fakeAPI(t)
	st, err := store.OpenSQLite(store.SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), Store: st})
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = e.Accept(context.Background(), delivery.Request{Items: []wechat.Outgoing{textOut("u", "x")}})
	if !errors.Is(err, delivery.ErrUnavailable) || !errors.Is(err, store.ErrClosed) {
		t.Errorf("Accept = %v, want ErrUnavailable wrapping store.ErrClosed", err)
	}
	if s := e.Stats(); s.Accepted != 0 {
		t.Errorf("stats %+v", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown on a closed store = %v", err)
	}
}

// hangingStore's claims hang until their ctx ends, as a store that
// stopped answering would.
type hangingStore struct {
	store.Store
	entered chan struct{}
}

func (s *hangingStore) Claim(ctx context.Context, now time.Time, max int, lease time.Duration) ([]store.Claim, time.Time, error) {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil, time.Time{}, ctx.Err()
}

// Shutdown keeps to its deadline when the dispatcher is stuck in a claim.
func TestShutdownDeadlineWithTheStoreHanging(t *testing.T) {
	srv := fakeAPI(t)
	st := &hangingStore{Store: memStore(t), entered: make(chan struct{}, 1)}
	e, _ := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), Store: st})
	<-st.entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Shutdown(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want the deadline", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Shutdown did not return after its deadline")
	}
}
