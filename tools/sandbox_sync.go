package tools

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// How the sandbox waits: for the server to come up, and until the replies
// to a line are all out, so that each line's answer is shown complete
// before the next prompt, and none is cut off or shown after the next line.

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
			s.answered = true
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

// waitReady polls /healthz until the server answers 200, the Serve
// function gives up, or startTimeout passes.
func waitReady(ctx context.Context, base string, served <-chan struct{}, serveErr *error) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-served:
			err := *serveErr
			if err == nil {
				err = errors.New("it stopped")
			}
			return fmt.Errorf("sandbox: the server did not start: %w", err)
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("sandbox: the server did not become ready within %s", startTimeout)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}
