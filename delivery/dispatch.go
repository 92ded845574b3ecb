package delivery

import (
	"context"
	"errors"
	"time"

	"github.com/wxreply/wxreply/store"
)

// The dispatcher: one goroutine that claims due lanes from the store, as
// many as there are free send slots, and starts a send for each. A retry
// waits in the store, not in a goroutine, so slots are only ever taken by
// calls under way.

// Start starts the dispatcher. Calling it again does nothing.
func (e *Engine) Start() {
	if e.started.Swap(true) {
		return
	}
	go e.dispatch()
	go e.renew(e.renewd)
}

// Shutdown stops claiming, lets the sends under way finish and returns
// nil once they have. Everything not under way stays in the store for
// the next start (or another instance). If ctx ends first the calls still
// at WeChat are cut off and their items given back: WeChat may have
// delivered them, and then they are delivered twice — the one duplicate
// the outbox allows. It returns ctx.Err() then.
func (e *Engine) Shutdown(ctx context.Context) error {
	if !e.stopped.Swap(true) {
		close(e.stop)
	}
	finished := make(chan struct{})
	go func() {
		// The dispatcher may be in a claim that the deadline must cut
		// off too; once it has returned no send is added.
		if e.started.Load() {
			<-e.done
		}
		e.sends.Wait()
		e.stopRenew.Do(func() { close(e.renewd) })
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
	}
	e.log.Warn("shutdown deadline: cutting off the calls still at WeChat; their messages stay in the store and are sent again at the next start",
		"in_flight", e.busy.Load())
	e.cancelCall()
	<-finished
	return ctx.Err()
}

func (e *Engine) dispatch() {
	defer close(e.done)
	free := make(chan struct{}, e.o.InFlight)
	slots := e.o.InFlight
	timer := time.NewTimer(0)
	defer timer.Stop()
	backoff := time.Duration(0) // after a store error
	failing := false            // the last claim failed
	for {
		// Take back the slots freed since the last look.
	drain:
		for {
			select {
			case <-free:
				slots++
			default:
				break drain
			}
		}
		var next time.Time
		if slots > 0 && backoff == 0 {
			now := e.now()
			claims, n, err := e.st.Claim(e.callCtx, now, slots, e.o.Lease)
			if err != nil {
				if errors.Is(err, store.ErrClosed) || e.callCtx.Err() != nil {
					return // closed, or cut off by Shutdown's deadline
				}
				backoff = time.Second
				// Once per outage, not once a second for its length.
				if !failing {
					e.log.Error("outbox: claiming due messages failed; trying again every second", "error", err)
				}
				failing = true
			} else if failing {
				failing = false
				e.log.Info("outbox: claiming due messages works again")
			}
			for _, c := range claims {
				slots--
				e.busy.Add(1)
				e.sends.Add(1)
				go func() {
					defer func() {
						e.busy.Add(-1)
						e.sends.Done()
						free <- struct{}{}
					}()
					e.send(c)
				}()
			}
			if len(claims) > 0 && slots > 0 {
				continue // there may be more due
			}
			next = n
		}
		wait := e.o.PollEvery
		if backoff > 0 {
			wait, backoff = backoff, 0
		} else if !next.IsZero() {
			wait = min(wait, max(next.Sub(e.now()), time.Millisecond))
		}
		if slots == 0 {
			wait = e.o.PollEvery // a freed slot wakes us first
		}
		timer.Reset(wait)
		select {
		case <-e.stop:
			return
		case <-e.wake:
		case <-free:
			slots++
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}
