// Package handlers is wxreply's HTTP surface: the Echo routes, middleware
// and the translation between requests and the parts behind them. It turns
// a callback request into a wechat.Message, hands it to a Responder and
// writes the answer; it decides nothing about replies itself.
package handlers

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/wxreply/wxreply/wechat"
)

// MaxBodyBytes is the largest callback body accepted; WeChat's own messages
// are a few KiB at most.
const MaxBodyBytes = 64 << 10

// Responder decides what to do with one inbound message and records its
// consequences (replies, the user's window, the retry-dedupe mark) in the
// store. It returns the passive reply's plaintext XML to answer in the
// HTTP response, or nil for success. An error means nothing could be
// recorded: the callback is answered 503, so that WeChat tries again. It
// must not wait on WeChat: the whole request has five seconds.
type Responder interface {
	Respond(ctx context.Context, m *wechat.Message) ([]byte, error)
}

// Config is what the HTTP surface needs. Token and Responder are required.
type Config struct {
	Token     string         // the Token typed into the MP console
	Cipher    *wechat.Cipher // nil: plaintext mode only
	Responder Responder
	Logger    *slog.Logger // nil: slog.Default()

	// Health reports why the server cannot take callbacks (rules not
	// loaded, the store not writable), nil when it can; nil means always.
	Health func() error

	// Report, when set, is what GET /healthz?verbose=1 shows (health.go).
	Report func(context.Context) HealthReport

	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// MaxClockSkew is how far a callback's timestamp may be from Now
	// before it is refused with 403 (WXREPLY_MAX_CLOCK_SKEW); 0 turns the
	// check off.
	MaxClockSkew time.Duration

	// AllowFrom, when not empty, is where callbacks may come from
	// (WXREPLY_ALLOW_FROM): GET and POST /wechat from any other client
	// address are refused with 403. Empty: from anywhere.
	AllowFrom []netip.Prefix

	// TrustedProxies are the proxies whose X-Forwarded-For names the
	// client (WXREPLY_TRUSTED_PROXIES); empty: the TCP peer is the client.
	TrustedProxies []netip.Prefix

	// APIRate is how many requests a second one client may make to
	// /api/v1, in bursts of up to twice as many (WXREPLY_API_RATE); 0
	// means no limit.
	APIRate float64

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
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(cfg.Logger)
	addrs := clientAddrs{trusted: cfg.TrustedProxies}
	e.IPExtractor = addrs.realIP
	// The allow-list and the rate limit refuse before the request log: a
	// flood of refusals costs a counter, not a log line each.
	e.Use(accessControl(cfg, addrs)...)
	// The request log wraps the panic recovery, so a request that panicked
	// still gets its line ("http request", or "callback"), with the 500 it
	// was answered.
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
		inflight:  newInflight(),
		now:       cfg.Now,
		maxSkew:   cfg.MaxClockSkew,
		metrics:   cfg.Metrics,
	}
	e.GET("/wechat", cb.verifyURL)
	e.POST("/wechat", cb.receive)
	e.GET("/healthz", healthz(cfg.Health, cfg.Report))
	e.HEAD("/healthz", healthz(cfg.Health, cfg.Report)) // load balancers that probe with HEAD
	if cfg.Push != nil {
		registerPush(e, *cfg.Push, cfg.Logger)
	}
	return e
}
