package delivery

import (
	"strings"
	"sync"
	"sync/atomic"
)

// Stats are an Engine's counters since it was made: what this instance
// accepted and ended. What waits in the store, over all instances, is
// Pending.
type Stats struct {
	Accepted    int64 // items recorded by Accept
	Delivered   int64
	Failed      int64 // includes OutOfWindow
	Retried     int64 // tries parked for a retry
	OutOfWindow int64 // failed because the user's window was closed
	QuotaPauses int64 // 45009 answers that paused the account
	InFlight    int64 // sends under way now

	// FailedByReason counts Failed by a bounded reason: WeChat's short
	// names and the engine's own, "other" for the rest.
	FailedByReason map[string]int64
}

type counters struct {
	accepted, delivered, retried, outOfWindow, quotaPauses atomic.Int64

	mu       sync.Mutex
	byReason map[string]int64
}

func (c *counters) failed(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byReason == nil {
		c.byReason = make(map[string]int64)
	}
	c.byReason[reasonLabel(reason)]++
}

// reasonLabel bounds reason for a metric label: an unknown errcode's
// reason carries WeChat's message, and a file error a path.
func reasonLabel(reason string) string {
	switch {
	case strings.HasPrefix(reason, "errcode "):
		return "other"
	case strings.HasPrefix(reason, "access token fetch failed"):
		return "access token fetch failed"
	case strings.HasPrefix(reason, "network error"):
		return "network error"
	case strings.HasPrefix(reason, "http status 5"):
		return "http status 5xx"
	case strings.HasPrefix(reason, "http status"):
		return "http status other"
	case strings.HasPrefix(reason, "wechat: media file"):
		return "media file"
	case len(reason) > 40:
		return "other"
	}
	return reason
}

// Stats returns the Engine's counters.
func (e *Engine) Stats() Stats {
	s := Stats{
		Accepted:    e.n.accepted.Load(),
		Delivered:   e.n.delivered.Load(),
		Retried:     e.n.retried.Load(),
		OutOfWindow: e.n.outOfWindow.Load(),
		QuotaPauses: e.n.quotaPauses.Load(),
		InFlight:    e.busy.Load(),
	}
	e.n.mu.Lock()
	s.FailedByReason = make(map[string]int64, len(e.n.byReason))
	for k, v := range e.n.byReason {
		s.FailedByReason[k] = v
		s.Failed += v
	}
	e.n.mu.Unlock()
	return s
}
