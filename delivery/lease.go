package delivery

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wxreply/wxreply/store"
)

// Leases: a claimed lane is the claiming instance's for one Lease, and
// the renewer extends the leases of the sends under way every third of
// one. A send that takes longer than a lease (uploads, a slow WeChat)
// keeps its lane; the lanes of an instance that died are free one lease
// after its last renewal, and the next Claim of a living instance takes
// them over.

// flight is the set of sends under way, by item ID.
type flight struct {
	mu    sync.Mutex
	tries map[string]*try
}

func (f *flight) add(t *try) {
	f.mu.Lock()
	if f.tries == nil {
		f.tries = make(map[string]*try)
	}
	f.tries[t.c.Item.ID] = t
	f.mu.Unlock()
}

func (f *flight) remove(t *try) {
	f.mu.Lock()
	delete(f.tries, t.c.Item.ID)
	f.mu.Unlock()
}

func (f *flight) snapshot() []*try {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*try, 0, len(f.tries))
	for _, t := range f.tries {
		out = append(out, t)
	}
	return out
}

// held is when t's lease last began, in Unix nanoseconds: its claim or
// its last renewal.
type held struct{ at atomic.Int64 }

func (h *held) set(t time.Time) { h.at.Store(t.UnixNano()) }
func (h *held) get() time.Time  { return time.Unix(0, h.at.Load()) }

// renew runs until stop is closed, extending the leases under way.
func (e *Engine) renew(stop <-chan struct{}) {
	every := max(e.o.Lease/3, time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		tries := e.flying.snapshot()
		if len(tries) == 0 {
			continue
		}
		claims := make([]store.Claim, len(tries))
		for i, t := range tries {
			claims[i] = t.c
		}
		now := e.now()
		ctx, cancel := context.WithTimeout(context.Background(), every)
		lost, err := e.st.Extend(ctx, claims, now.Add(e.o.Lease))
		cancel()
		if err != nil {
			// The leases run on from their last renewal; a send whose
			// lease ends before the store answers again may be sent
			// once more by another instance.
			e.log.Warn("outbox: renewing leases failed; trying again", "in_flight", len(tries), "error", err.Error())
			continue
		}
		gone := make(map[string]bool, len(lost))
		for _, id := range lost {
			gone[id] = true
		}
		for _, t := range tries {
			if gone[t.c.Item.ID] {
				e.log.Warn("outbox: lease lost while sending; another claim may send the message too", t.attrs()...)
				continue
			}
			t.held.set(now)
		}
	}
}
