package handlers

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wxreply/wxreply/wechat"
)

// The push API: the operator's other systems send messages to users
// through wxreply, so that every message to a user goes through one queue,
// one access token and one view of the 48-hour window.

// PushSender queues outbound messages and reports on them. *wechat.Sender
// is one.
type PushSender interface {
	// Enqueue accepts items for delivery and returns their ids, or fails
	// without accepting any (wechat.ErrQueueFull when the queue is full).
	Enqueue(items ...wechat.Outgoing) ([]string, error)
	// Status reports on an accepted item; false for an unknown id.
	Status(id string) (wechat.Status, bool)
}

// PushWindow knows which users are inside the 48-hour customer-service
// window. *wechat.Window is one.
type PushWindow interface {
	Open(openid string, now time.Time) (open, known bool)
}

// PushConfig turns on the push API under /api/v1. APIKey and Sender are
// required: with no key the routes are not registered at all.
type PushConfig struct {
	APIKey string // WXREPLY_API_KEY, the bearer key callers present
	Sender PushSender
	Window PushWindow // nil: no window check, WeChat's 45015 decides

	// IdempotencyTTL is how long an Idempotency-Key is remembered; zero
	// means DefaultIdempotencyTTL.
	IdempotencyTTL time.Duration

	// MaxIdempotencyKeys bounds the keys remembered at once, and so the
	// memory they take (about 300 to 500 bytes each); zero means
	// DefaultMaxIdempotencyKeys.
	MaxIdempotencyKeys int

	// Now is the clock of the window check; nil means time.Now.
	Now func() time.Time
}

const (
	// DefaultIdempotencyTTL is how long an Idempotency-Key is remembered:
	// a day covers any client's retry schedule.
	DefaultIdempotencyTTL = 24 * time.Hour

	// DefaultMaxIdempotencyKeys is WeChat's usual daily quota of template
	// messages: an account that keys every push stays under it within
	// DefaultIdempotencyTTL, in about 50 MB at most.
	DefaultMaxIdempotencyKeys = 100_000

	// maxIdempotencyKey bounds the header; UUIDs and hashes fit easily.
	maxIdempotencyKey = 255

	// retryAfterSeconds is answered with 429: the queue drains at the
	// Sender's pace, a few messages per worker per second.
	retryAfterSeconds = 1
)

// Push API statuses. "sent" is a template message WeChat accepted whose
// TEMPLATESENDJOBFINISH event has not arrived yet.
const (
	pushQueued    = "queued"
	pushSent      = "sent"
	pushDelivered = "delivered"
	pushFailed    = "failed"
)

// Problem is one thing wrong with a pushed message, at a JSON path.
type Problem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// apiError is every error answer of the push API.
type apiError struct {
	Error    string    `json:"error"`
	Problems []Problem `json:"problems,omitempty"`
}

// PushStatus is the push API's answer about one message.
type PushStatus struct {
	ID             string `json:"id"`
	Status         string `json:"status"` // queued, sent (templates), delivered or failed
	Reason         string `json:"reason,omitempty"`
	ErrCode        int    `json:"errcode,omitempty"`
	Attempts       int    `json:"attempts,omitempty"`
	MsgID          int64  `json:"msgid,omitempty"`
	TemplateStatus string `json:"template_status,omitempty"`
}

// push serves /api/v1.
type push struct {
	cfg  PushConfig
	keys *idempotency
	log  *slog.Logger
}

// registerPush adds the push API routes. A config without an APIKey or a
// Sender registers nothing: the API is off, and /api/v1 answers 404.
func registerPush(e *echo.Echo, cfg PushConfig, log *slog.Logger) {
	switch {
	case cfg.APIKey == "":
		log.Info("push API off: no WXREPLY_API_KEY")
		return
	case cfg.Sender == nil:
		log.Error("push API off: no sender configured")
		return
	}
	if cfg.IdempotencyTTL <= 0 {
		cfg.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if cfg.MaxIdempotencyKeys <= 0 {
		cfg.MaxIdempotencyKeys = DefaultMaxIdempotencyKeys
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &push{cfg: cfg, keys: newIdempotency(cfg.IdempotencyTTL, cfg.MaxIdempotencyKeys), log: log}
	g := e.Group("/api/v1", bearerAuth(cfg.APIKey))
	g.POST("/messages", p.postMessage)
	g.GET("/messages/:id", p.status(false))
	g.POST("/templates", p.postTemplate)
	g.GET("/templates/:id", p.status(true))
	// The group's catch-all would answer Echo's plain-text 404 even for a
	// known path with the wrong method; the API answers JSON, and 405.
	g.RouteNotFound("", noRoute)
	g.RouteNotFound("/*", noRoute)
}

// noRoute answers a request no route took: 405 with Allow for a known path
// and another method, 404 otherwise.
func noRoute(c echo.Context) error {
	if m := allowedMethod(c.Request().URL.Path); m != "" {
		c.Response().Header().Set(echo.HeaderAllow, m)
		return writeError(c, http.StatusMethodNotAllowed,
			fmt.Sprintf("method %s not allowed here: use %s", c.Request().Method, m))
	}
	return writeError(c, http.StatusNotFound,
		"no such route: the push API is POST /api/v1/messages, GET /api/v1/messages/{id}, POST /api/v1/templates and GET /api/v1/templates/{id}")
}

// allowedMethod is the one method the API takes on path, "" for a path it
// does not serve.
func allowedMethod(path string) string {
	rest, ok := strings.CutPrefix(path, "/api/v1/")
	if !ok {
		return ""
	}
	kind, id, hasID := strings.Cut(rest, "/")
	switch {
	case kind != "messages" && kind != "templates":
		return ""
	case !hasID:
		return http.MethodPost
	case id != "" && !strings.Contains(id, "/"):
		return http.MethodGet
	}
	return ""
}

// bearerAuth checks "Authorization: Bearer <key>". Both sides are hashed
// before the constant-time compare so that not even the key's length
// leaks through timing.
func bearerAuth(key string) echo.MiddlewareFunc {
	want := sha256.Sum256([]byte(key))
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			scheme, token, ok := strings.Cut(c.Request().Header.Get(echo.HeaderAuthorization), " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="wxreply"`)
				return writeError(c, http.StatusUnauthorized, "missing Authorization: Bearer <WXREPLY_API_KEY>")
			}
			got := sha256.Sum256([]byte(strings.TrimSpace(token)))
			if subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="wxreply", error="invalid_token"`)
				return writeError(c, http.StatusUnauthorized, "invalid API key")
			}
			return next(c)
		}
	}
}

// postMessage is POST /api/v1/messages: a customer-service message.
func (p *push) postMessage(c echo.Context) error {
	var m wechat.CustomMessage
	body, ok, err := decodeStrict(c, &m)
	if !ok {
		return err
	}
	problems := customProblems(&m)
	if len(problems) > 0 {
		return writeProblems(c, "invalid message: nothing was sent", problems)
	}
	return p.accept(c, "messages", body, m.ToUser, m.MsgType, func() (string, bool, error) {
		// The window matters to customer-service messages only; template
		// messages are not bound to it.
		if p.cfg.Window != nil {
			if open, known := p.cfg.Window.Open(m.ToUser, p.cfg.Now()); known && !open {
				return "", false, writeError(c, http.StatusConflict,
					"user is outside the 48-hour customer-service window: nothing was sent (a template message may still reach them)")
			}
		}
		return p.enqueue(c, wechat.Outgoing{Custom: &m})
	})
}

// postTemplate is POST /api/v1/templates: a template message.
func (p *push) postTemplate(c echo.Context) error {
	var m wechat.TemplateMessage
	body, ok, err := decodeStrict(c, &m)
	if !ok {
		return err
	}
	problems := templateProblems(&m)
	if len(problems) > 0 {
		return writeProblems(c, "invalid template message: nothing was sent", problems)
	}
	return p.accept(c, "templates", body, m.ToUser, "template", func() (string, bool, error) {
		return p.enqueue(c, wechat.Outgoing{Template: &m})
	})
}

// accept runs send once per Idempotency-Key. send either queues the
// message (ok true, the new id) or writes the refusal itself (ok false).
// A refused request leaves no trace under its key, so a retry after a 429
// is tried again rather than refused forever.
func (p *push) accept(c echo.Context, kind string, body []byte, openid, msgType string, send func() (id string, ok bool, err error)) error {
	key := c.Request().Header.Get("Idempotency-Key")
	if key == "" {
		id, ok, err := send()
		if !ok {
			return err
		}
		return p.accepted(c, kind, id, openid, msgType, false)
	}
	if len(key) > maxIdempotencyKey || !printableASCII(key) {
		return writeError(c, http.StatusBadRequest,
			fmt.Sprintf("Idempotency-Key must be 1 to %d printable ASCII characters", maxIdempotencyKey))
	}
	fp := fingerprint(kind, body)
	for {
		entry, first, full := p.keys.begin(key, fp)
		if full {
			p.log.Warn("push refused: too many Idempotency-Keys remembered", "max", p.cfg.MaxIdempotencyKeys, "openid", openid)
			c.Response().Header().Set(echo.HeaderRetryAfter, strconv.Itoa(int(sweepWhenFull/time.Second)))
			return writeError(c, http.StatusTooManyRequests, fmt.Sprintf(
				"too many Idempotency-Keys in use (the server remembers at most %d): nothing was sent; retry later",
				p.cfg.MaxIdempotencyKeys))
		}
		if !first {
			if entry.fingerprint != fp {
				return writeError(c, http.StatusUnprocessableEntity,
					"Idempotency-Key was already used for a different request: nothing was sent")
			}
			id, ok, err := entry.wait(c.Request().Context())
			if err != nil {
				return writeError(c, http.StatusServiceUnavailable, "request canceled while the first request with this Idempotency-Key was running")
			}
			if !ok {
				continue // the first attempt was refused: this one tries anew
			}
			return p.accepted(c, kind, id, openid, msgType, true)
		}
		// Whatever happens to this request (a refusal, a panic), the key
		// must not stay claimed with retries waiting on it.
		completed := false
		defer func() {
			if !completed {
				p.keys.abandon(key, entry)
			}
		}()
		id, ok, err := send()
		if !ok {
			return err
		}
		entry.complete(id)
		completed = true
		return p.accepted(c, kind, id, openid, msgType, false)
	}
}

// enqueue hands one message to the Sender, answering the refusals.
func (p *push) enqueue(c echo.Context, out wechat.Outgoing) (string, bool, error) {
	ids, err := p.cfg.Sender.Enqueue(out)
	switch {
	case errors.Is(err, wechat.ErrQueueFull):
		c.Response().Header().Set(echo.HeaderRetryAfter, strconv.Itoa(retryAfterSeconds))
		return "", false, writeError(c, http.StatusTooManyRequests, "send queue is full: retry later")
	case errors.Is(err, wechat.ErrSenderClosed):
		return "", false, writeError(c, http.StatusServiceUnavailable, "server is shutting down: retry later")
	case err != nil:
		p.log.Error("push not queued", "error", err)
		return "", false, writeError(c, http.StatusUnprocessableEntity, "message not accepted: "+err.Error())
	case len(ids) != 1:
		p.log.Error("push not queued: sender returned no id")
		return "", false, writeError(c, http.StatusInternalServerError, "message not queued")
	}
	return ids[0], true, nil
}

// accepted answers 202 with the id and where to ask for its status.
func (p *push) accepted(c echo.Context, kind, id, openid, msgType string, replayed bool) error {
	if replayed {
		p.log.Info("push retry answered from Idempotency-Key", "id", id, "openid", openid)
	} else {
		p.log.Info("push queued", "id", id, "openid", openid, "msgtype", msgType)
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/"+kind+"/"+id)
	return writeJSON(c, http.StatusAccepted, PushStatus{ID: id, Status: pushQueued})
}

// status is GET /api/v1/{messages,templates}/:id.
func (p *push) status(template bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Param("id")
		s, ok := p.cfg.Sender.Status(id)
		if !ok || (s.MsgType == "template") != template {
			return writeError(c, http.StatusNotFound, "unknown id: ids are kept for 24 hours")
		}
		return writeJSON(c, http.StatusOK, pushStatus(s))
	}
}

// pushStatus maps a Sender's Status onto the API's four statuses. A
// message being sent is still queued to the caller; a template message is
// delivered only once its TEMPLATESENDJOBFINISH event says success.
func pushStatus(s wechat.Status) PushStatus {
	ps := PushStatus{
		ID:             s.ID,
		Reason:         s.Reason,
		ErrCode:        s.ErrCode,
		Attempts:       s.Attempts,
		MsgID:          s.MsgID,
		TemplateStatus: s.TemplateStatus,
	}
	switch s.State {
	case wechat.StateDelivered:
		ps.Status = pushDelivered
		if s.MsgType == "template" {
			switch {
			case s.TemplateStatus == "":
				ps.Status = pushSent
			case s.TemplateStatus != "success":
				ps.Status = pushFailed
				if ps.Reason == "" {
					ps.Reason = s.TemplateStatus
				}
			}
		}
	case wechat.StateFailed:
		ps.Status = pushFailed
	default:
		ps.Status = pushQueued
	}
	return ps
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// fingerprint identifies a request for Idempotency-Key: the route and the
// canonical body.
func fingerprint(kind string, canonical []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write(canonical)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// The concrete sending side must keep fitting the push API.
var (
	_ PushSender = (*wechat.Sender)(nil)
	_ PushWindow = (*wechat.Window)(nil)
)
