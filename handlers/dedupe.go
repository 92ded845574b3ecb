package handlers

import (
	"time"

	"github.com/patrickmn/go-cache"
)

// DefaultDedupeTTL covers WeChat's retry period: it waits five seconds for
// an answer and tries three more times, so every copy of a message arrives
// within about twenty seconds of the first.
const DefaultDedupeTTL = 60 * time.Second

// retryWait bounds how long a retry waits for the first copy's answer, so
// the retry itself is still answered inside WeChat's five seconds.
const retryWait = 4 * time.Second

// dedupe remembers the callbacks it has seen, keyed by
// wechat.Message.DedupeKey, together with the passive reply decided for
// the first copy. A retry gets that same reply without being handled
// again, even when it arrives while the first copy is still being
// handled.
type dedupe struct {
	seen *cache.Cache
	// none is the finished answer of every callback answered success.
	// Most callbacks are, and one shared value for them keeps a minute of
	// MsgIds down to the keys alone: the garbage collector scans what the
	// cache holds on every cycle, at the callback's expense.
	none *answer
}

// answer is the passive reply decided for the first copy of a callback:
// its plaintext XML, or nil for none. It is kept in plaintext because
// each copy is encrypted (or not) for its own request.
type answer struct {
	done  chan struct{} // closed once reply is set
	reply []byte
}

func newDedupe(ttl time.Duration) *dedupe {
	none := &answer{done: make(chan struct{})}
	close(none.done)
	return &dedupe{seen: cache.New(ttl, ttl), none: none}
}

// begin registers key. first is true when this is the first copy: the
// caller must handle it and call finish on the answer. Otherwise the
// answer is the first copy's, to wait on.
func (d *dedupe) begin(key string) (a *answer, first bool) {
	fresh := &answer{done: make(chan struct{})}
	for {
		if d.seen.Add(key, fresh, cache.DefaultExpiration) == nil {
			return fresh, true
		}
		// Add fails only when the key is present; it may expire between
		// the two calls, in which case the next Add succeeds.
		if v, ok := d.seen.Get(key); ok {
			return v.(*answer), false
		}
	}
}

// finish records the first copy's reply under key and releases any
// retries waiting on a.
func (d *dedupe) finish(key string, a *answer, reply []byte) {
	a.reply = reply
	close(a.done)
	if reply == nil {
		// Retries from now on get the shared answer; those already
		// waiting hold a.
		d.seen.Set(key, d.none, cache.DefaultExpiration)
	}
}

// wait returns the first copy's reply, or ok false when it is not ready
// within retryWait.
func (a *answer) wait() (reply []byte, ok bool) {
	t := time.NewTimer(retryWait)
	defer t.Stop()
	select {
	case <-a.done:
		return a.reply, true
	case <-t.C:
		return nil, false
	}
}
