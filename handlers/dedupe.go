package handlers

import (
	"sync"
	"time"
)

// retryWait bounds how long a retry waits for the first copy's answer, so
// the retry itself is still answered inside WeChat's five seconds.
const retryWait = 4 * time.Second

// inflight holds the callbacks being handled now, keyed by
// wechat.Message.DedupeKey, so that a WeChat retry arriving while its
// first copy is still being handled waits for that copy's answer instead
// of being handled twice. Once the first copy is recorded its key leaves
// the map: later retries are recognised by the store's mark, on any
// instance and after a restart. The map holds only what is under way, so
// it does not grow with the keys an outsider can invent.
type inflight struct {
	mu sync.Mutex
	m  map[string]*answer
}

// answer is the outcome of a callback's first copy: the passive reply's
// plaintext XML (nil for none), or the error that kept it from being
// recorded. It is kept in plaintext because each copy is encrypted (or
// not) for its own request.
type answer struct {
	done  chan struct{} // closed once reply and err are set
	reply []byte
	err   error
}

func newInflight() *inflight { return &inflight{m: make(map[string]*answer)} }

// begin registers key. first is true when no copy is under way: the
// caller must handle it and call finish. Otherwise the answer is the
// copy under way's, to wait on.
func (f *inflight) begin(key string) (a *answer, first bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a, ok := f.m[key]; ok {
		return a, false
	}
	a = &answer{done: make(chan struct{})}
	f.m[key] = a
	return a, true
}

// finish records the first copy's outcome and releases the retries
// waiting on a.
func (f *inflight) finish(key string, a *answer, reply []byte, err error) {
	a.reply, a.err = reply, err
	close(a.done)
	f.mu.Lock()
	delete(f.m, key)
	f.mu.Unlock()
}

// wait returns the first copy's outcome, or ok false when it is not ready
// within retryWait.
func (a *answer) wait() (reply []byte, err error, ok bool) {
	t := time.NewTimer(retryWait)
	defer t.Stop()
	select {
	case <-a.done:
		return a.reply, a.err, true
	case <-t.C:
		return nil, nil, false
	}
}
