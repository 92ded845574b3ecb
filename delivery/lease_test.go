package delivery_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
)

// extendCounter counts the renewals that kept every lease.
type extendCounter struct {
	store.Store
	kept atomic.Int64
}

func (s *extendCounter) Extend(ctx context.Context, cs []store.Claim, until time.Time) ([]string, error) {
	lost, err := s.Store.Extend(ctx, cs, until)
	if err == nil && len(lost) == 0 && len(cs) > 0 {
		s.kept.Add(1)
	}
	return lost, err
}

// A send that takes several leases keeps its lane: the engine renews the
// lease while the call is at WeChat, so another instance polling the same
// store does not take the message over and send it again.
func TestLeaseRenewedWhileSending(t *testing.T) {
	const lease = 600 * time.Millisecond
	srv := fakeAPI(t)
	release := srv.Hold(wechat.PathCustomSend)
	defer release()
	c := apiClient(t, srv, nil, func(o *wechat.ClientOptions) { o.Timeout = time.Minute })
	st := &extendCounter{Store: memStore(t)}
	res := newResults()
	e1, _ := newEngine(t, delivery.Options{Client: c, Store: st, Lease: lease}, res)
	e1.Start()
	ids := accept(t, e1, textOut("u", "x"))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := srv.WaitPending(ctx, 1); err != nil {
		t.Fatal(err)
	}
	e2, _ := newEngine(t, delivery.Options{Client: c, Store: st, Lease: lease, PollEvery: 10 * time.Millisecond}, res)
	e2.Start()
	// Four renewals, a third of a lease apart: more than a lease since the
	// claim, while e2 looked for due work every 10 ms.
	waitFor(t, "four renewals", func() bool { return st.kept.Load() >= 4 })
	if n := srv.Pending(); n != 1 {
		t.Fatalf("%d calls at WeChat, want 1: the lease was not kept", n)
	}
	release()
	res.wait(t, 1)
	if r := res.get(ids[0]); len(r) != 1 || !r[0].Delivered {
		t.Errorf("results %+v, want one: delivered", r)
	}
	if got := len(srv.Accepted(wechat.PathCustomSend)); got != 1 {
		t.Errorf("sent %d times, want once", got)
	}
}
