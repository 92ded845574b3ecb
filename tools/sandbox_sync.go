package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/wxreply/wxreply/wechat"
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
// received by then. A ServeFunc that does not hand over its Sender (see
// SandboxServer.Watch) gets the older way: a marker message.
func (s *session) sync(ctx context.Context) {
	if s.stats == nil {
		s.syncByMarker(ctx)
		return
	}
	deadline := time.NewTimer(s.replyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		// Read the counters before showing what arrived: a message
		// counted as final here was received before this read.
		st := s.stats.Stats()
		s.showArrived()
		if st.Delivered+st.Failed >= st.Enqueued {
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

// markerPrefix starts the text of every marker message.
const markerPrefix = "wxreply-sandbox-turn-"

// syncByMarker pushes a marker to the same user through the push API:
// the server sends one user's messages strictly in order, so when the
// marker reaches the fake API, every reply queued before it is out. The
// marker costs three lines in the server log and a message in its
// counters, which is why Watch is better.
func (s *session) syncByMarker(ctx context.Context) {
	s.turn++
	marker := fmt.Sprintf("%s%d", markerPrefix, s.turn)
	if err := s.pushMarker(ctx, marker); err != nil {
		// Refused (the user left the window, say): wait until quiet.
		for {
			r, ok := s.box.next(ctx, 300*time.Millisecond)
			if !ok {
				return
			}
			if !isMarker(r.Custom) {
				s.showReceived(r)
			}
		}
	}
	for {
		r, ok := s.box.next(ctx, s.replyTimeout)
		if !ok {
			fmt.Fprintln(s.out, "[still sending after waiting; later replies show after your next line, and the server log says why]")
			return
		}
		switch {
		case !isMarker(r.Custom):
			s.showReceived(r)
		case r.Custom.Text.Content == marker:
			return
		}
		// A marker of an earlier turn that timed out: not shown either.
	}
}

func isMarker(m *wechat.CustomMessage) bool {
	return m != nil && m.Text != nil && strings.HasPrefix(m.Text.Content, markerPrefix)
}

func (s *session) pushMarker(ctx context.Context, marker string) error {
	body, _ := json.Marshal(wechat.CustomMessage{ToUser: s.openid, MsgType: wechat.MsgTypeText, Text: &wechat.Text{Content: marker}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/api/v1/messages", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("push API answered %s", resp.Status)
	}
	return nil
}
