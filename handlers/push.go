package handlers

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
)

// The push API: the operator's other systems send messages to users
// through wxreply, so that every message to a user goes through one queue,
// one access token and one view of the 48-hour window.

// PushOutbox records pushed messages and reports on them.
// *delivery.Engine is one.
type PushOutbox interface {
	// Accept records the request's items (with its Idempotency-Key) and
	// returns once they are in the store.
	Accept(ctx context.Context, r delivery.Request) (delivery.Accepted, error)
	// Status reports on an accepted item; false for an unknown id.
	Status(ctx context.Context, id string) (store.Status, bool, error)
	// WindowOpen reports whether a user is inside the 48-hour window, and
	// whether the store knows the user at all.
	WindowOpen(ctx context.Context, openid string) (open, known bool, err error)
}

// PushConfig turns on the push API under /api/v1. APIKey and Outbox are
// required: with no key the routes are not registered at all.
type PushConfig struct {
	APIKey string // WXREPLY_API_KEY, the bearer key callers present
	Outbox PushOutbox
}

const (
	// maxIdempotencyKey bounds the header; UUIDs and hashes fit easily.
	maxIdempotencyKey = 255

	// retryAfterSeconds is answered with 503 while the store cannot be
	// written.
	retryAfterSeconds = 5
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
	LastError      string `json:"last_error,omitempty"` // the last try's error, WeChat's errmsg or the network's
	Attempts       int    `json:"attempts,omitempty"`
	MsgID          int64  `json:"msgid,omitempty"`
	TemplateStatus string `json:"template_status,omitempty"`
}

// push serves /api/v1.
type push struct {
	cfg PushConfig
	log *slog.Logger
}

// registerPush adds the push API routes. A config without an APIKey or a
// Outbox registers nothing: the API is off, and /api/v1 answers 404.
func registerPush(e *echo.Echo, cfg PushConfig, log *slog.Logger) {
	switch {
	case cfg.APIKey == "":
		log.Info("push API off: no WXREPLY_API_KEY")
		return
	case cfg.Outbox == nil:
		log.Error("push API off: no outbox configured")
		return
	}
	p := &push{cfg: cfg, log: log}
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
	// The window matters to customer-service messages only; template
	// messages are not bound to it.
	open, known, err := p.cfg.Outbox.WindowOpen(c.Request().Context(), m.ToUser)
	if err != nil {
		return p.unavailable(c, err)
	}
	if known && !open {
		return writeError(c, http.StatusConflict,
			"user is outside the 48-hour customer-service window: nothing was sent (a template message may still reach them)")
	}
	return p.accept(c, "messages", body, m.ToUser, m.MsgType, wechat.Outgoing{Custom: &m})
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
	return p.accept(c, "templates", body, m.ToUser, "template", wechat.Outgoing{Template: &m})
}

// accept records out, once per Idempotency-Key: a request repeated with
// the same key and body gets the first one's id and sends nothing; the
// same key with another body is refused. The key lives in the store, so
// this holds across restarts and, on a shared store, across instances.
func (p *push) accept(c echo.Context, kind string, body []byte, openid, msgType string, out wechat.Outgoing) error {
	req := delivery.Request{Items: []wechat.Outgoing{out}}
	if key := c.Request().Header.Get("Idempotency-Key"); key != "" {
		if len(key) > maxIdempotencyKey || !printableASCII(key) {
			return writeError(c, http.StatusBadRequest,
				fmt.Sprintf("Idempotency-Key must be 1 to %d printable ASCII characters", maxIdempotencyKey))
		}
		fp := fingerprint(kind, body)
		req.IdemKey, req.IdemFingerprint = key, fp[:]
	}
	acc, err := p.cfg.Outbox.Accept(c.Request().Context(), req)
	switch {
	case errors.Is(err, store.ErrIdempotencyConflict):
		return writeError(c, http.StatusUnprocessableEntity,
			"Idempotency-Key was already used for a different request: nothing was sent")
	case errors.Is(err, delivery.ErrClosed):
		c.Response().Header().Set(echo.HeaderRetryAfter, strconv.Itoa(retryAfterSeconds))
		return writeError(c, http.StatusServiceUnavailable, "server is shutting down: nothing was sent; retry")
	case errors.Is(err, delivery.ErrInvalidOutgoing):
		return writeError(c, http.StatusUnprocessableEntity, "message not accepted: "+err.Error())
	case err != nil:
		return p.unavailable(c, err)
	case len(acc.IDs) != 1:
		p.log.Error("push not recorded: the outbox returned no id")
		return writeError(c, http.StatusInternalServerError, "message not recorded")
	}
	return p.accepted(c, kind, acc.IDs[0], openid, msgType, acc.Duplicate)
}

// unavailable answers 503 when the store cannot be reached or written:
// nothing was recorded, and the caller should retry.
func (p *push) unavailable(c echo.Context, err error) error {
	p.log.Error("push API: store unavailable", "error", err)
	c.Response().Header().Set(echo.HeaderRetryAfter, strconv.Itoa(retryAfterSeconds))
	return writeError(c, http.StatusServiceUnavailable, "cannot record the message now: nothing was sent; retry")
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
		s, ok, err := p.cfg.Outbox.Status(c.Request().Context(), id)
		if err != nil {
			return p.unavailable(c, err)
		}
		if !ok || (s.MsgType == delivery.MsgTypeTemplate) != template {
			return writeError(c, http.StatusNotFound, "unknown id: ids are kept for 24 hours")
		}
		return writeJSON(c, http.StatusOK, pushStatus(s))
	}
}

// pushStatus maps an outbox item's Status onto the API's four statuses. A
// message being sent is still queued to the caller; a template message is
// delivered only once its TEMPLATESENDJOBFINISH event says success.
func pushStatus(s store.Status) PushStatus {
	ps := PushStatus{
		ID:             s.ID,
		Reason:         s.Reason,
		ErrCode:        s.ErrCode,
		LastError:      s.LastError,
		Attempts:       s.Attempts,
		MsgID:          s.MsgID,
		TemplateStatus: s.TemplateStatus,
	}
	switch s.State {
	case store.StateDelivered:
		ps.Status = pushDelivered
		if s.MsgType == delivery.MsgTypeTemplate {
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
	case store.StateFailed:
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

// The outbox must keep fitting the push API.
var _ PushOutbox = (*delivery.Engine)(nil)
