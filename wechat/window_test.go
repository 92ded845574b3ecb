package wechat_test

import (
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
