package delivery_test

import (
	"context"
	"testing"
	"time"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
)

// The window recorded in the store decides before sending, on the
// engine's clock; template messages are not bound by it.
func TestWindowIsEnforced(t *testing.T) {
	tests := []struct {
		name     string
		prepare  func(t *testing.T, e *delivery.Engine, clk *clock)
		template bool
		open     bool // WindowOpen before the send
		known    bool
		sent     bool
	}{
		{"unknown user is tried", func(*testing.T, *delivery.Engine, *clock) {}, false, false, false, true},
		{"recent interaction", func(t *testing.T, e *delivery.Engine, clk *clock) {
			touch(t, e, "u")
			clk.Advance(time.Hour)
		}, false, true, true, true},
		{"47h59m later", func(t *testing.T, e *delivery.Engine, clk *clock) {
			touch(t, e, "u")
			clk.Advance(48*time.Hour - time.Minute)
		}, false, true, true, true},
		{"48h later", func(t *testing.T, e *delivery.Engine, clk *clock) {
			touch(t, e, "u")
			clk.Advance(48 * time.Hour)
		}, false, false, true, false},
		{"an older touch does not shorten it", func(t *testing.T, e *delivery.Engine, clk *clock) {
			touch(t, e, "u")
			clk.Advance(-40 * time.Hour)
			touch(t, e, "u") // a replayed callback
			clk.Advance(40*time.Hour + 47*time.Hour)
		}, false, true, true, true},
		{"template outside window", func(t *testing.T, e *delivery.Engine, clk *clock) {
			touch(t, e, "u")
			clk.Advance(49 * time.Hour)
		}, true, false, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeAPI(t)
			clk := newClock()
			e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), Now: clk.Now, Lease: 100 * time.Hour})
			tt.prepare(t, e, clk)
			open, known, err := e.WindowOpen(context.Background(), "u")
			if err != nil || open != tt.open || known != tt.known {
				t.Errorf("WindowOpen = %v, %v, %v; want %v, %v", open, known, err, tt.open, tt.known)
			}
			out := textOut("u", "hi")
			if tt.template {
				out = templateOut("u")
			}
			ids := accept(t, e, out)
			res.wait(t, 1)
			st := status(t, e, ids[0])
			if sent := len(srv.Received()) > 0; sent != tt.sent {
				t.Fatalf("sent = %v, want %v (status %+v)", sent, tt.sent, st)
			}
			if !tt.sent && (st.State != store.StateFailed || st.Reason != delivery.ReasonOutOfWindow || st.ErrCode != 0 || st.Attempts != 0) {
				t.Errorf("status = %+v, want failed out of window without attempts", st)
			}
			if tt.sent && st.State != store.StateDelivered {
				t.Errorf("status = %+v, want delivered", st)
			}
			if s := e.Stats(); !tt.sent && (s.OutOfWindow != 1 || s.FailedByReason[delivery.ReasonOutOfWindow] != 1) {
				t.Errorf("stats = %+v", s)
			}
		})
	}
}

// WeChat's 45015 fails the item after one attempt and closes the user's
// window in the store: the user's later items, queued behind it or
// accepted after, fail out of window when their turn comes, without a
// call. An interaction after the 45015 reopens it.
func TestOutOfWindowThenTouchReopens(t *testing.T) {
	srv := fakeAPI(t)
	srv.SetOutOfWindow("gone")
	clk := newClock()
	e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), Now: clk.Now})
	queued := accept(t, e, textOut("gone", "one"), textOut("gone", "two"), textOut("gone", "three"))
	res.wait(t, 3)
	later := accept(t, e, textOut("gone", "four"))
	res.wait(t, 4)

	if st := status(t, e, queued[0]); st.State != store.StateFailed || st.Reason != delivery.ReasonOutOfWindow || st.ErrCode != 45015 || st.Attempts != 1 {
		t.Errorf("first = %+v", st)
	}
	for _, id := range append(queued[1:], later...) {
		if st := status(t, e, id); st.State != store.StateFailed || st.Reason != delivery.ReasonOutOfWindow || st.ErrCode != 0 || st.Attempts != 0 {
			t.Errorf("after the 45015: %+v, want failed out of window without a call", st)
		}
	}
	if got := count(srv, wechat.PathCustomSend); got != 1 {
		t.Errorf("calls = %d, want 1", got)
	}
	if open, known, _ := e.WindowOpen(context.Background(), "gone"); open || !known {
		t.Errorf("window open=%v known=%v, want closed and known", open, known)
	}
	if s := e.Stats(); s.OutOfWindow != 4 || s.Failed != 4 || s.FailedByReason[delivery.ReasonOutOfWindow] != 4 {
		t.Errorf("stats = %+v", s)
	}

	// The user writes again: the callback touches the window.
	clk.Advance(time.Second)
	srv.Interact("gone")
	touch(t, e, "gone")
	if open, known, _ := e.WindowOpen(context.Background(), "gone"); !open || !known {
		t.Errorf("after the touch: open=%v known=%v, want open", open, known)
	}
	again := accept(t, e, textOut("gone", "five"))
	res.wait(t, 5)
	if st := status(t, e, again[0]); st.State != store.StateDelivered || st.Attempts != 1 {
		t.Errorf("after the touch: %+v, want delivered", st)
	}
	if got := texts(srv, "gone"); len(got) != 1 || got[0] != "five" {
		t.Errorf("delivered %v", got)
	}
}

// A 45015 that answers a call made before the user wrote again does not
// close the window the new message just opened: the user's replies to it
// must still go out.
func TestOutOfWindowBeforeNewInteraction(t *testing.T) {
	srv := fakeAPI(t)
	clk := newClock()
	e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), Now: clk.Now})
	srv.FailNext(wechat.PathCustomSend, wechat.ErrCodeOutOfWindow, 1)
	release := srv.Hold(wechat.PathCustomSend)
	defer release()
	first := accept(t, e, textOut("u", "old"))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := srv.WaitPending(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	touch(t, e, "u") // the user writes while the call is on its way
	release()
	res.wait(t, 1)
	second := accept(t, e, textOut("u", "new"))
	res.wait(t, 2)
	if st := status(t, e, first[0]); st.State != store.StateFailed || st.ErrCode != wechat.ErrCodeOutOfWindow {
		t.Errorf("first = %+v, want failed with 45015", st)
	}
	if st := status(t, e, second[0]); st.State != store.StateDelivered {
		t.Errorf("second = %+v, want delivered: the window was opened after the 45015 call", st)
	}
}
