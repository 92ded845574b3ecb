package tools

import (
	"context"
	"fmt"
	"time"
)

// How the sandbox knows that the replies to a line are all out, so that
// each line's answer is shown complete before the next prompt, and none
// is cut off or shown after the next line.

// pollEvery is how often sync looks at the Sender's counters.
const pollEvery = 2 * time.Millisecond

// sync shows the customer-service messages that answer the line just
// sent. The server queues a line's replies before it answers the
// callback, so the replies are all out once every message the Sender has
// accepted is delivered or failed; what was delivered, the fake API has
// received by then.
func (s *session) sync(ctx context.Context) {
	deadline := time.NewTimer(s.replyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		// Read the counters before showing what arrived: a message
		// counted as final here was received before this read.
		st := s.stats.Stats()
		s.showArrived()
		if st.Delivered+st.Failed >= st.Accepted {
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			fmt.Fprintln(s.out, "[still sending after waiting; later replies show after your next line, and the server log says why]")
			return
		case <-ctx.Done():
			return
		}
	}
}

// showArrived shows what the fake API has received, without waiting.
func (s *session) showArrived() {
	for {
		r, ok := s.box.take()
		if !ok {
			return
		}
		s.showReceived(r)
	}
}
