package wechat_test

import (
	"context"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

func TestWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		do    func(*wechat.Window)
		at    time.Time
		open  bool
		known bool
	}{
		{"never seen", func(*wechat.Window) {}, t0, false, false},
		{"just touched", func(w *wechat.Window) { w.Touch("u", t0) }, t0, true, true},
		{"47h59m later", func(w *wechat.Window) { w.Touch("u", t0) }, t0.Add(48*time.Hour - time.Minute), true, true},
		{"48h later", func(w *wechat.Window) { w.Touch("u", t0) }, t0.Add(48 * time.Hour), false, true},
		{"an older touch does not shorten it", func(w *wechat.Window) {
			w.Touch("u", t0)
			w.Touch("u", t0.Add(-40*time.Hour))
		}, t0.Add(47 * time.Hour), true, true},
		{"closed", func(w *wechat.Window) { w.Touch("u", t0); w.Close("u") }, t0, false, true},
		{"closed, never touched", func(w *wechat.Window) { w.Close("u") }, t0, false, true},
		{"replayed old touch keeps it closed", func(w *wechat.Window) {
			w.Touch("u", t0)
			w.Close("u")
			w.Touch("u", t0)
		}, t0, false, true},
		{"new touch reopens", func(w *wechat.Window) {
			w.Touch("u", t0)
			w.Close("u")
			w.Touch("u", t0.Add(time.Minute))
		}, t0.Add(time.Minute), true, true},
		{"other users are separate", func(w *wechat.Window) { w.Touch("v", t0) }, t0, false, false},
		{"45015 to a call made before a newer interaction", func(w *wechat.Window) {
			w.Touch("u", t0.Add(time.Minute))
			w.CloseAsOf("u", t0)
		}, t0.Add(time.Minute), true, true},
		{"45015 to a call made after the last interaction", func(w *wechat.Window) {
			w.Touch("u", t0)
			w.CloseAsOf("u", t0.Add(time.Minute))
		}, t0.Add(time.Minute), false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := wechat.NewWindow(48 * time.Hour)
			tt.do(w)
			if open, known := w.Open("u", tt.at); open != tt.open || known != tt.known {
				t.Errorf("Open = %v, %v; want %v, %v", open, known, tt.open, tt.known)
			}
		})
	}
}

func TestWindowPrune(t *testing.T) {
	w := wechat.NewWindow(time.Hour)
	now := time.Now()
	w.Touch("old", now.Add(-3*time.Hour))
	w.Touch("recent", now.Add(-time.Minute))
	w.Touch("closed-old", now.Add(-3*time.Hour))
	w.Close("closed-old") // closed just now: kept, so it stays known-closed
	if n := w.Prune(now); n != 1 || w.Len() != 2 {
		t.Fatalf("pruned %d, left %d; want 1 and 2", n, w.Len())
	}
	for _, tt := range []struct {
		openid string
		known  bool
	}{{"old", false}, {"recent", true}, {"closed-old", true}} {
		if _, known := w.Open(tt.openid, now); known != tt.known {
			t.Errorf("%s known = %v, want %v", tt.openid, known, tt.known)
		}
	}
	if n := w.Prune(now.Add(2 * time.Hour)); n != 2 || w.Len() != 0 {
		t.Errorf("later prune removed %d, left %d", n, w.Len())
	}
}

// WeChat's 45015 fails the message after one attempt, is recorded, and
// closes the user's window so the next reply is not even tried.
func TestSender45015ClosesWindow(t *testing.T) {
	srv := fakeAPI(t)
	srv.SetOutOfWindow("gone")
	w := wechat.NewWindow(0)
	s, res := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil), Window: w})
	first, _ := s.Enqueue(textOut("gone", "one"))
	res.wait(t, 1)
	second, _ := s.Enqueue(textOut("gone", "two"))
	res.wait(t, 2)

	st1, _ := s.Status(first[0])
	st2, _ := s.Status(second[0])
	if st1.State != wechat.StateFailed || st1.Reason != wechat.ReasonOutOfWindow || st1.ErrCode != 45015 || st1.Attempts != 1 {
		t.Errorf("first = %+v", st1)
	}
	if st2.State != wechat.StateFailed || st2.Reason != wechat.ReasonOutOfWindow || st2.Attempts != 0 {
		t.Errorf("second = %+v", st2)
	}
	if got := count(srv, wechat.PathCustomSend); got != 1 {
		t.Errorf("calls = %d, want 1", got)
	}
	if open, known := w.Open("gone", time.Now()); open || !known {
		t.Errorf("window open=%v known=%v, want closed and known", open, known)
	}
	if got := s.Stats(); got.OutOfWindow != 2 || got.Failed != 2 {
		t.Errorf("stats = %+v", got)
	}
}

// A 45015 that answers a call made before the user wrote again does not
// close the window the new message just opened: the user's replies to it
// must still go out.
func TestSender45015BeforeNewInteraction(t *testing.T) {
	srv := fakeAPI(t)
	w := wechat.NewWindow(0)
	s, res := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil), Window: w})
	srv.FailNext(wechat.PathCustomSend, wechat.ErrCodeOutOfWindow, 1)
	release := srv.Hold(wechat.PathCustomSend)
	defer release()
	first, _ := s.Enqueue(textOut("u", "old"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.WaitPending(ctx, 1); err != nil {
		t.Fatal(err)
	}
	w.Touch("u", time.Now()) // the user writes while the call is on its way
	release()
	res.wait(t, 1)
	second, _ := s.Enqueue(textOut("u", "new"))
	res.wait(t, 2)
	st1, _ := s.Status(first[0])
	st2, _ := s.Status(second[0])
	if st1.State != wechat.StateFailed || st1.ErrCode != wechat.ErrCodeOutOfWindow {
		t.Errorf("first = %+v, want failed with 45015", st1)
	}
	if st2.State != wechat.StateDelivered {
		t.Errorf("second = %+v, want delivered: the window was opened after the 45015 call", st2)
	}
}

// The window decides before sending; template messages are not bound.
func TestSenderEnforcesWindow(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name     string
		prepare  func(*wechat.Window)
		template bool
		sent     bool
	}{
		{"unknown user is tried", func(*wechat.Window) {}, false, true},
		{"recent interaction", func(w *wechat.Window) { w.Touch("u", now.Add(-time.Hour)) }, false, true},
		{"interaction 49h ago", func(w *wechat.Window) { w.Touch("u", now.Add(-49*time.Hour)) }, false, false},
		{"closed by 45015", func(w *wechat.Window) { w.Touch("u", now.Add(-time.Hour)); w.Close("u") }, false, false},
		{"reopened after close", func(w *wechat.Window) { w.Close("u"); w.Touch("u", now) }, false, true},
		{"template outside window", func(w *wechat.Window) { w.Touch("u", now.Add(-49*time.Hour)) }, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeAPI(t)
			w := wechat.NewWindow(48 * time.Hour)
			tt.prepare(w)
			s, res := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil), Window: w})
			out := textOut("u", "hi")
			if tt.template {
				out = wechat.Outgoing{Template: &wechat.TemplateMessage{ToUser: "u", TemplateID: "T"}}
			}
			ids, _ := s.Enqueue(out)
			res.wait(t, 1)
			st, _ := s.Status(ids[0])
			if sent := len(srv.Received()) > 0; sent != tt.sent {
				t.Fatalf("sent = %v, want %v (status %+v)", sent, tt.sent, st)
			}
			if !tt.sent && (st.State != wechat.StateFailed || st.Reason != wechat.ReasonOutOfWindow || st.Attempts != 0) {
				t.Errorf("status = %+v, want failed out of window without attempts", st)
			}
			if tt.sent && st.State != wechat.StateDelivered {
				t.Errorf("status = %+v, want delivered", st)
			}
		})
	}
}
