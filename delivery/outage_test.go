package delivery_test

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// An outage of WeChat (or of the proxy in front of it) is ridden out:
// the retries wait in the store with a short backoff, and once it ends
// every item is delivered, exactly once and in order per user, none
// failed.
func TestOutageIsRiddenOut(t *testing.T) {
	tests := []struct {
		name string
		fail func(*wechattest.Server)
	}{
		{"http 503", func(s *wechattest.Server) { s.FailHTTP(wechat.PathCustomSend, 503, 300) }},
		{"system busy", func(s *wechattest.Server) { s.FailNext(wechat.PathCustomSend, -1, 300) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const users, per = 5, 4
			srv := fakeAPI(t)
			tt.fail(srv)
			e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil),
				BaseBackoff: 2 * time.Millisecond, MaxBackoff: 10 * time.Millisecond})
			var ids []string
			for i := range per {
				for u := range users {
					ids = append(ids, accept(t, e, textOut(fmt.Sprintf("u%d", u), fmt.Sprint(i)))...)
				}
			}
			res.wait(t, len(ids))
			for _, id := range ids {
				if r := res.get(id); len(r) != 1 || !r[0].Delivered {
					t.Errorf("%s: results %+v, want delivered once", id, r)
				}
			}
			for u := range users {
				if got := texts(srv, fmt.Sprintf("u%d", u)); !reflect.DeepEqual(got, seq(per)) {
					t.Errorf("u%d received %v, want %v", u, got, seq(per))
				}
			}
			if got := count(srv, wechat.PathCustomSend); got != 300+len(ids) {
				t.Errorf("calls = %d, want the outage's 300 and %d", got, len(ids))
			}
			if s := e.Stats(); s.Delivered != int64(len(ids)) || s.Failed != 0 || s.Retried != 300 {
				t.Errorf("stats = %+v, want %d delivered, 300 retried", s, len(ids))
			}
		})
	}
}

// An outage longer than MaxAge fails the items with the outage's reason.
func TestOutageLongerThanMaxAge(t *testing.T) {
	tests := []struct {
		name   string
		fail   func(*wechattest.Server)
		reason string
		label  string
		code   int
	}{
		{"http 503", func(s *wechattest.Server) { s.FailHTTP(wechat.PathCustomSend, 503, 1<<20) }, "http status 503", "http status 5xx", 0},
		{"system busy", func(s *wechattest.Server) { s.FailNext(wechat.PathCustomSend, -1, 1<<20) }, "system busy", "system busy", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const users, per = 5, 4
			srv := fakeAPI(t)
			tt.fail(srv)
			e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil),
				BaseBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, MaxAge: 200 * time.Millisecond})
			var ids []string
			for i := range per {
				for u := range users {
					ids = append(ids, accept(t, e, textOut(fmt.Sprintf("u%d", u), fmt.Sprint(i)))...)
				}
			}
			res.wait(t, len(ids))
			for _, id := range ids {
				st := status(t, e, id)
				if st.State != store.StateFailed || st.Reason != tt.reason || st.ErrCode != tt.code || st.Attempts < 1 {
					t.Errorf("%s: %+v, want failed: %s", id, st, tt.reason)
				}
				if r := res.get(id); len(r) != 1 || r[0].Delivered || r[0].Reason != tt.reason {
					t.Errorf("%s: results %+v", id, r)
				}
			}
			s := e.Stats()
			if s.Failed != int64(len(ids)) || s.FailedByReason[tt.label] != int64(len(ids)) || s.Delivered != 0 {
				t.Errorf("stats = %+v, want %d failed as %q", s, len(ids), tt.label)
			}
			if len(srv.Accepted(wechat.PathCustomSend)) != 0 {
				t.Error("something was delivered during the outage")
			}
		})
	}
}

// 45009 (the daily quota is spent) pauses the whole account for
// QuotaPause: no call at all until it ends, then everything goes out, in
// order. The probe that got 45009 is not charged an attempt.
func TestQuotaPause(t *testing.T) {
	const pause = 200 * time.Millisecond
	srv := fakeAPI(t)
	srv.FailNext(wechat.PathCustomSend, wechat.ErrCodeDailyQuota, 1)
	// One call at a time, so that what is sent after the 45009 is only
	// what the engine chose to send.
	e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), InFlight: 1, QuotaPause: pause})
	var ids []string
	for i := range 3 {
		for _, u := range []string{"a", "b", "c"} {
			ids = append(ids, accept(t, e, textOut(u, fmt.Sprint(i)))...)
		}
	}
	res.wait(t, len(ids))
	calls := srv.Received()
	if len(calls) != len(ids)+1 || calls[0].ErrCode != wechat.ErrCodeDailyQuota {
		t.Fatalf("calls = %d (first errcode %d), want the 45009 and %d sends", len(calls), calls[0].ErrCode, len(ids))
	}
	// The pause runs from the 45009's answer, which came after the call
	// was received; the store keeps it to the millisecond.
	for _, c := range calls[1:] {
		if early := calls[0].Time.Add(pause - time.Millisecond); c.Time.Before(early) {
			t.Errorf("a call %v after the 45009, during the pause of %v", c.Time.Sub(calls[0].Time), pause)
		}
	}
	for _, u := range []string{"a", "b", "c"} {
		if got := texts(srv, u); !reflect.DeepEqual(got, seq(3)) {
			t.Errorf("%s received %v", u, got)
		}
	}
	probe := calls[0].OpenID + "/" + calls[0].Custom.Text.Content
	for _, id := range ids {
		st := status(t, e, id)
		if st.State != store.StateDelivered || st.Attempts != 1 {
			t.Errorf("%s (%s/%s): %+v, want delivered after 1 attempt (probe %s)", id, st.OpenID, st.InMsgID, st, probe)
		}
	}
	if s := e.Stats(); s.QuotaPauses != 1 || s.Retried != 0 || s.Delivered != int64(len(ids)) || s.Failed != 0 {
		t.Errorf("stats = %+v", s)
	}
}

// While the pause is in force on the engine's clock the dispatcher keeps
// looking and sends nothing; moved past its end, everything is sent.
func TestQuotaPauseOnTheEngineClock(t *testing.T) {
	srv := fakeAPI(t)
	srv.FailNext(wechat.PathCustomSend, wechat.ErrCodeDailyQuota, 1)
	clk := newClock()
	st := &countingStore{Store: memStore(t)}
	e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), Store: st, Now: clk.Now,
		InFlight: 1, QuotaPause: 10 * time.Minute, Lease: time.Hour})
	ids := accept(t, e, textOut("a", "0"), textOut("a", "1"))
	ids = append(ids, accept(t, e, textOut("b", "0"))...)
	waitFor(t, "the 45009", func() bool { return e.Stats().QuotaPauses == 1 })
	waitFor(t, "the probe to be parked", func() bool { return e.Stats().InFlight == 0 })
	before := len(srv.Received())
	claims := st.claims.Load()
	waitFor(t, "the dispatcher to look for work 20 times", func() bool { return st.claims.Load() >= claims+20 })
	if got := len(srv.Received()); got != before {
		t.Fatalf("%d calls during the pause", got-before)
	}
	if before != 1 {
		t.Errorf("%d calls before the pause took hold, want the probe", before)
	}
	if n := res.count(); n != 0 {
		t.Errorf("%d items ended during the pause", n)
	}
	clk.Advance(10*time.Minute + time.Millisecond)
	res.wait(t, len(ids))
	for _, id := range ids {
		if s := status(t, e, id); s.State != store.StateDelivered || s.Attempts != 1 {
			t.Errorf("%+v, want delivered after 1 attempt", s)
		}
	}
	if got := texts(srv, "a"); !reflect.DeepEqual(got, seq(2)) {
		t.Errorf("a received %v", got)
	}
}
