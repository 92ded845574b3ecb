// Package handlers is wxreply's HTTP surface: the Echo routes, middleware
// and the translation between requests and the parts behind them. It turns
// a callback request into a wechat.Message, hands it to a Responder and
// writes the answer; it decides nothing about replies itself.
package handlers

import (
	"context"
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/wxreply/wxreply/wechat"
)

// MaxBodyBytes is the largest callback body accepted; WeChat's own messages
// are a few KiB at most.
const MaxBodyBytes = 64 << 10

// Responder decides what to do with one inbound message. It queues any
// asynchronous replies and returns the passive reply to answer in the HTTP
// response, or nil for none. It must not wait on outbound calls: WeChat
// gives the whole request five seconds.
type Responder interface {
	Respond(ctx context.Context, m *wechat.Message) *wechat.CustomMessage
}

// Config is what the HTTP surface needs. Token and Responder are required.
type Config struct {
	Token     string         // the Token typed into the MP console
	Cipher    *wechat.Cipher // nil: plaintext mode only
	Responder Responder
	Logger    *slog.Logger // nil: slog.Default()

	// DedupeTTL is how long a callback is remembered to drop WeChat's
	// retries; zero means DefaultDedupeTTL.
	DedupeTTL time.Duration

	// Ready reports whether the server can take callbacks (rules loaded);
	// nil means always.
	Ready func() bool

	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// Push turns on the push API under /api/v1; nil (or no APIKey) means off.
	Push *PushConfig

	// Metrics turns on GET /metrics; nil means off.
	Metrics *Metrics
}

// New builds the Echo server with every route and middleware.
func New(cfg Config) *echo.Echo {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DedupeTTL <= 0 {
		cfg.DedupeTTL = DefaultDedupeTTL
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(cfg.Logger)
	// The request log wraps the panic recovery, so a request that panicked
	// still gets its "http request" line, with the 500 it was answered.
	e.Use(middleware.RequestID(), requestLog(cfg.Logger), recoverPanics(cfg.Logger))
	if cfg.Metrics != nil {
		e.Use(cfg.Metrics.instrument())
		e.GET("/metrics", cfg.Metrics.handler())
	}

	cb := &callback{
		token:     cfg.Token,
		cipher:    cfg.Cipher,
		responder: cfg.Responder,
		log:       cfg.Logger,
		dedupe:    newDedupe(cfg.DedupeTTL),
		now:       cfg.Now,
	}
	e.GET("/wechat", cb.verifyURL)
	e.POST("/wechat", cb.receive)
	e.GET("/healthz", healthz(cfg.Ready))
	e.HEAD("/healthz", healthz(cfg.Ready)) // load balancers that probe with HEAD
	if cfg.Push != nil {
		registerPush(e, *cfg.Push, cfg.Logger)
	}
	return e
}
