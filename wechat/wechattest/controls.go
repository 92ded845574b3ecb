package wechattest

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// The controls a test has over the fake: forced failures, delays, held
// calls, and the state of users and media.

// FailNext makes the next times calls of api answer errcode (after any
// latency, before the token is checked).
func (s *Server) FailNext(api string, errcode, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range times {
		s.failCode[api] = append(s.failCode[api], errcode)
	}
}

// FailHTTP makes the next times calls of api answer the HTTP status with
// a non-JSON body, as a proxy in front of WeChat would.
func (s *Server) FailHTTP(api string, status, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range times {
		s.failHTTP[api] = append(s.failHTTP[api], status)
	}
}

// FailBody makes the next times calls of api answer HTTP 200 with body
// as it is (say an HTML page, or nothing), as a gateway in front of
// WeChat might. The call is not carried out.
func (s *Server) FailBody(api, body string, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range times {
		s.failBody[api] = append(s.failBody[api], body)
	}
}

// SetLatency delays every answer of api by d (0 removes the delay).
func (s *Server) SetLatency(api string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency[api] = d
}

// DelayNext delays the next times answers of api by d, on top of any
// latency: a client with a shorter timeout sees them time out.
func (s *Server) DelayNext(api string, d time.Duration, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range times {
		s.delayNext[api] = append(s.delayNext[api], d)
	}
}

// Hold makes calls of api wait, unanswered, until release is called (or
// their client gives up); with WaitPending a test can change the fake
// while they are in flight. Calls arriving after release pass.
func (s *Server) Hold(api string) (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gate, ok := s.holds[api]
	if !ok {
		gate = make(chan struct{})
		s.holds[api] = gate
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.holds[api] == gate {
				delete(s.holds, api)
			}
			close(gate)
		})
	}
}

// SetOutOfWindow makes customer-service and typing calls to openid answer
// 45015, as for a user who has not interacted for 48 hours.
func (s *Server) SetOutOfWindow(openid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outOfWindow[openid] = true
}

// Unfollow makes every message to openid answer 43004 (require
// subscribe), as for a user who unfollowed the account.
func (s *Server) Unfollow(openid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unfollowed[openid] = true
}

// Interact records that openid interacted with the account (a message, a
// click, a follow), as WeChat would see it: it reopens a window closed by
// SetOutOfWindow and restarts the WithReplyCap count.
func (s *Server) Interact(openid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.outOfWindow, openid)
	delete(s.unfollowed, openid)
	delete(s.replies, openid)
}

// ExpireMedia makes messages naming mediaID answer 40007, as after its
// three days.
func (s *Server) ExpireMedia(mediaID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.media[mediaID] = false
}

// forced is what a call is made to answer instead of the real thing.
type forced struct {
	delay  time.Duration
	status int    // an HTTP status other than 200
	body   string // a raw HTTP 200 body, when raw
	raw    bool
	code   int // an errcode
}

// takeFailure waits while api is held, then pops the next forced HTTP
// status, or else the next forced raw body, or else the next forced
// errcode, for api, with the delay to apply first. ok is false when the
// client went away while held.
func (s *Server) takeFailure(ctx context.Context, api string) (f forced, ok bool) {
	s.mu.Lock()
	gate := s.holds[api]
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return forced{}, false
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f.delay = s.latency[api]
	if q := s.delayNext[api]; len(q) > 0 {
		f.delay += q[0]
		s.delayNext[api] = q[1:]
	}
	if q := s.failHTTP[api]; len(q) > 0 {
		f.status = q[0]
		s.failHTTP[api] = q[1:]
		return f, true
	}
	if q := s.failBody[api]; len(q) > 0 {
		f.body, f.raw = q[0], true
		s.failBody[api] = q[1:]
		return f, true
	}
	if q := s.failCode[api]; len(q) > 0 {
		f.code = q[0]
		s.failCode[api] = q[1:]
	}
	return f, true
}

// writeForced answers a forced HTTP status or raw body and reports
// whether it did.
func writeForced(w http.ResponseWriter, f forced) bool {
	switch {
	case f.status != 0:
		http.Error(w, http.StatusText(f.status), f.status)
	case f.raw:
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(f.body))
	default:
		return false
	}
	return true
}

// sleep waits d, or returns false when the client goes away first.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
