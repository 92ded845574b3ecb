package wechat

import (
	"sync"
	"time"
)

// DefaultWindow is how long after a user's interaction the account may
// send that user customer-service messages.
const DefaultWindow = 48 * time.Hour

// Window remembers, per openid, the last interaction that opened the
// 48-hour customer-service window, so that replies to users known to be
// outside it are not sent at all: WeChat would answer 45015, and every
// such call is wasted quota. A user the server has never seen is unknown
// and is tried: the window may have been opened before this process
// started. Safe for concurrent use.
type Window struct {
	ttl time.Duration

	mu    sync.Mutex
	users map[string]windowEntry
}

type windowEntry struct {
	last     time.Time // the last window-opening interaction
	closed   bool      // WeChat answered 45015 since last
	closedAt time.Time // when, for Prune
}

// NewWindow returns a Window of ttl (DefaultWindow when ttl <= 0).
func NewWindow(ttl time.Duration) *Window {
	if ttl <= 0 {
		ttl = DefaultWindow
	}
	return &Window{ttl: ttl, users: make(map[string]windowEntry)}
}

// Touch records a window-opening interaction of openid at time at: a
// message, a follow, a menu click, a QR scan. An older at than the one
// recorded changes nothing, so replayed callbacks cannot shorten the
// window; a newer one reopens a window closed by Close.
func (w *Window) Touch(openid string, at time.Time) {
	if openid == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.users[openid]
	if ok && !at.After(e.last) {
		return
	}
	w.users[openid] = windowEntry{last: at}
}

// Close marks openid as outside the window until its next Touch, after
// WeChat answered 45015 for it: WeChat knows interactions this process
// may not have seen, and its answer wins.
func (w *Window) Close(openid string) {
	w.CloseAsOf(openid, time.Now())
}

// CloseAsOf is Close for WeChat's 45015 answer to a call made at asked.
// An interaction recorded after asked wins: the answer may have been
// given before WeChat saw it, and the user's window is open again.
func (w *Window) CloseAsOf(openid string, asked time.Time) {
	if openid == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.users[openid]
	if e.last.After(asked) {
		return
	}
	e.closed = true
	e.closedAt = time.Now()
	w.users[openid] = e
}

// Open reports whether openid's window is open at now, and whether the
// user is known at all. Callers send when open or when !known.
func (w *Window) Open(openid string, now time.Time) (open bool, known bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.users[openid]
	if !ok {
		return false, false
	}
	if e.closed {
		return false, true
	}
	return now.Sub(e.last) < w.ttl, true
}

// Prune forgets users whose last interaction, and last Close, lie a
// window's length or more before now, and returns how many. A pruned user
// becomes unknown and is tried once more; a 45015 answer then closes it
// again, so pruning costs at most one call per user per window and keeps
// memory bounded.
func (w *Window) Prune(now time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for id, e := range w.users {
		if now.Sub(e.last) >= w.ttl && now.Sub(e.closedAt) >= w.ttl {
			delete(w.users, id)
			n++
		}
	}
	return n
}

// Len returns how many users the Window knows.
func (w *Window) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.users)
}
