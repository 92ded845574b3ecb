// Package wechattest is a fake WeChat API for tests and local sandboxes.
// It serves the token, customer-service, template, typing, media,
// custom menu and QR code endpoints over real HTTP, checks access tokens, payloads (text length,
// articles, media ids, upload formats and sizes) and recipients the way
// the real API does, records what it received, and can be told to fail:
// any errcode, HTTP errors, garbled answers, slowness, token
// invalidation, a closed window, an unfollowed user, the cap on replies
// per interaction.
//
// Start one with NewServer and point a wechat.Client at its URL. It is
// safe for concurrent use.
package wechattest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// Default credentials the fake accepts.
const (
	DefaultAppID     = "wx00000000fake0001"
	DefaultAppSecret = "fake-app-secret-0000000000000001"
)

// Received is one call of a message or media API, as the fake saw it and
// answered it. Token calls are not recorded (they carry the secret); see
// TokenFetches.
type Received struct {
	API    string          // the path, e.g. wechat.PathCustomSend
	Body   json.RawMessage // the JSON body exactly as sent; nil for uploads
	OpenID string          // touser

	Custom   *wechat.CustomMessage   // PathCustomSend, decoded
	Template *wechat.TemplateMessage // PathTemplateSend, decoded
	Command  string                  // PathTyping: Typing or CancelTyping

	MediaType string // PathMediaUpload: the type query parameter
	FileName  string // PathMediaUpload: the part's file name
	FileSize  int    // PathMediaUpload: bytes received

	ErrCode    int    // the errcode answered; 0 when accepted
	HTTPStatus int    // the HTTP status answered
	MsgID      int64  // PathTemplateSend: the msgid answered
	MediaID    string // PathMediaUpload: the media_id answered
	Abandoned  bool   // the client went away before the answer
	Garbled    bool   // answered with a raw body by FailBody, not carried out
	Time       time.Time

	QRCode       *wechat.QRCodeRequest // PathQRCodeCreate, decoded
	QRCodeAnswer *wechat.QRCode        // PathQRCodeCreate: the code answered
}

// OK reports whether the fake accepted the call: what the real API would
// have delivered.
func (r Received) OK() bool {
	return r.ErrCode == 0 && r.HTTPStatus == http.StatusOK && !r.Abandoned && !r.Garbled
}

// Option configures a Server.
type Option func(*Server)

// WithCredentials sets the AppID and AppSecret the fake accepts.
func WithCredentials(appID, secret string) Option {
	return func(s *Server) { s.AppID, s.AppSecret = appID, secret }
}

// WithTokenTTL sets the expires_in of issued tokens (default 7200s).
func WithTokenTTL(d time.Duration) Option { return func(s *Server) { s.tokenTTL = d } }

// WithStrictMedia answers 40007 for media_ids the fake did not issue.
func WithStrictMedia() Option { return func(s *Server) { s.strictMedia = true } }

// WithTemplates makes template_ids other than these answer 40037.
func WithTemplates(ids ...string) Option {
	return func(s *Server) {
		for _, id := range ids {
			s.templates[id] = true
		}
	}
}

// WithFollowers makes the account's followers exactly these openids:
// messages to anyone else answer 40003 (invalid openid), as the real API
// does for an openid of another account. Without it every openid is one.
func WithFollowers(openids ...string) Option {
	return func(s *Server) {
		s.followers = make(map[string]bool, len(openids))
		for _, id := range openids {
			s.followers[id] = true
		}
	}
}

// WithReplyCap makes a user accept at most n customer-service messages
// between two Interact calls, answering 45047 to more, as the real API
// caps what may be sent per interaction (5 after a message, 3 after a
// menu click or follow, at the time of writing).
func WithReplyCap(n int) Option { return func(s *Server) { s.replyCap = n } }

// WithOnReceive calls f for every recorded call just before its answer is
// written, so a sandbox can show what arrives. f must not block for long.
func WithOnReceive(f func(Received)) Option { return func(s *Server) { s.onReceive = f } }

// Server is the fake API. URL is empty for a Server made with New until
// it is served somewhere; NewServer starts it on loopback.
type Server struct {
	URL       string // base URL for wechat.ClientOptions.BaseURL
	AppID     string // accepted credentials: read them, set them with
	AppSecret string // WithCredentials (changing them while serving races)

	tokenTTL    time.Duration
	strictMedia bool
	followers   map[string]bool // nil: everyone follows
	replyCap    int             // 0: no cap
	onReceive   func(Received)
	srv         *httptest.Server

	mu           sync.Mutex
	received     []Received
	pending      int           // message calls received and not yet answered
	changed      chan struct{} // closed and replaced on each record or pending change
	tokenFetches int
	tokens       map[string]*tokenState
	current      map[string]string // token API → its current token; the two are isolated, as on the real API
	templates    map[string]bool
	nextMsgID    int64
	media        map[string]bool // issued media_id → still valid
	outOfWindow  map[string]bool
	unfollowed   map[string]bool
	replies      map[string]int      // openid → messages accepted since Interact
	failCode     map[string][]int    // api → errcodes to answer next
	failHTTP     map[string][]int    // api → HTTP statuses to answer next
	failBody     map[string][]string // api → raw HTTP 200 bodies to answer next
	delayNext    map[string][]time.Duration
	latency      map[string]time.Duration
	holds        map[string]chan struct{} // api → closed on release
	menus        menuState
}

// New returns a Server that is not listening: serve it with ServeHTTP.
func New(opts ...Option) *Server {
	s := &Server{
		AppID:       DefaultAppID,
		AppSecret:   DefaultAppSecret,
		tokenTTL:    7200 * time.Second,
		changed:     make(chan struct{}),
		tokens:      make(map[string]*tokenState),
		current:     make(map[string]string),
		templates:   make(map[string]bool),
		nextMsgID:   1000000001,
		media:       make(map[string]bool),
		outOfWindow: make(map[string]bool),
		unfollowed:  make(map[string]bool),
		replies:     make(map[string]int),
		failCode:    make(map[string][]int),
		failHTTP:    make(map[string][]int),
		failBody:    make(map[string][]string),
		delayNext:   make(map[string][]time.Duration),
		latency:     make(map[string]time.Duration),
		holds:       make(map[string]chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// NewServer returns a Server listening on loopback. Close it when done,
// e.g. with t.Cleanup(srv.Close).
func NewServer(opts ...Option) *Server {
	s := New(opts...)
	s.srv = httptest.NewServer(s)
	s.URL = s.srv.URL
	return s
}

// Close stops a Server started by NewServer.
func (s *Server) Close() {
	if s.srv != nil {
		s.srv.Close()
	}
}

// ServeHTTP routes the API paths.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case wechat.PathToken:
		s.serveToken(w, r)
	case wechat.PathStableToken:
		s.serveStableToken(w, r)
	case wechat.PathCustomSend, wechat.PathTemplateSend, wechat.PathTyping:
		s.serveMessage(w, r)
	case wechat.PathMediaUpload:
		s.serveUpload(w, r)
	case wechat.PathMenuCreate, wechat.PathMenuAddConditional, wechat.PathMenuGet,
		wechat.PathMenuDelete, wechat.PathSelfMenuInfo:
		s.serveMenu(w, r)
	case wechat.PathQRCodeCreate:
		s.serveQRCode(w, r)
	default:
		http.NotFound(w, r)
	}
}

// Received returns a copy of every recorded call, oldest first.
func (s *Server) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.received...)
}

// Accepted returns the recorded calls of api that were accepted.
func (s *Server) Accepted(api string) []Received {
	var out []Received
	for _, r := range s.Received() {
		if r.API == api && r.OK() {
			out = append(out, r)
		}
	}
	return out
}

// TokenFetches returns how many token calls (either API) were made.
func (s *Server) TokenFetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenFetches
}

// WaitReceived waits until at least n calls are recorded, or ctx ends.
func (s *Server) WaitReceived(ctx context.Context, n int) error {
	return s.wait(ctx, func() bool { return len(s.received) >= n })
}

// WaitPending waits until at least n message or media calls have arrived
// and are not answered yet (held by Hold, SetLatency or DelayNext), or ctx ends:
// a test can then change the fake under calls that are in flight.
func (s *Server) WaitPending(ctx context.Context, n int) error {
	return s.wait(ctx, func() bool { return s.pending >= n })
}

// Pending is how many message or media calls have arrived and are not
// answered yet: the calls a client that dies now leaves in doubt.
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

func (s *Server) wait(ctx context.Context, done func() bool) error {
	for {
		s.mu.Lock()
		ok, ch := done(), s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// track counts a call as pending until the returned func is called.
func (s *Server) track() func() {
	s.mu.Lock()
	s.pending++
	s.notifyLocked()
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.pending--
		s.notifyLocked()
		s.mu.Unlock()
	}
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// record stores one call and tells the waiters and OnReceive. Calls are
// recorded before they are answered, so a client holding an answer knows
// the call is in Received.
func (s *Server) record(r Received) {
	s.mu.Lock()
	s.received = append(s.received, r)
	s.notifyLocked()
	f := s.onReceive
	s.mu.Unlock()
	if f != nil {
		f(r)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; encoding=utf-8")
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, map[string]any{"errcode": code, "errmsg": msg})
}
