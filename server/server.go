// Package server builds one wxreply server — store, WeChat client, rules,
// outbox and HTTP surface — from a Config, and runs it. serve, the
// sandbox and every end-to-end test use this one wiring, so what the
// tests prove is what operators run.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/handlers"
	"github.com/wxreply/wxreply/rules"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
)

// Config is everything a server is built from: the contract's settings
// (see the README), and hooks for tests.
type Config struct {
	Token, AppID, AppSecret string
	AESKey                  string // "" is plaintext mode
	APIBase                 string // WeChat's API; default https://api.weixin.qq.com
	RulesPath               string
	APIKey                  string // "" turns the push API off
	Store                   string // WXREPLY_STORE: a directory, "memory" or a redis:// URL

	ShutdownTimeout time.Duration // default 25s
	InFlight        int           // send calls under way at once; default delivery.DefaultInFlight
	MaxRetryAge     time.Duration // default delivery.DefaultMaxAge
	Lease           time.Duration // default delivery.DefaultLease
	Typing          bool
	LegacyToken     bool

	// WebhookSecret (WXREPLY_WEBHOOK_SECRET) is the key that webhook
	// reply items sign their requests with; nothing uses it yet.
	WebhookSecret string

	// MaxClockSkew is WXREPLY_MAX_CLOCK_SKEW: how far a callback's
	// timestamp may be from Now before it is refused with 403. The zero
	// value means the default, DefaultMaxClockSkew; a negative value
	// turns the check off (the contract's WXREPLY_MAX_CLOCK_SKEW=0).
	MaxClockSkew time.Duration

	// AllowFrom, when not empty, is where callbacks may come from
	// (WXREPLY_ALLOW_FROM); TrustedProxies are the proxies whose
	// X-Forwarded-For is believed (WXREPLY_TRUSTED_PROXIES).
	AllowFrom, TrustedProxies []netip.Prefix

	// APIRate is the push API's requests a second per client
	// (WXREPLY_API_RATE); 0 means no limit.
	APIRate float64

	Logger *slog.Logger
	Now    func() time.Time

	// LogBuffer, when the logs go through one, has its dropped lines
	// counted in /metrics.
	LogBuffer *LogBuffer

	// Decided, when set, is told which rules answered each callback
	// (none: nil) as soon as they are decided, before the callback is
	// answered: the sandbox shows it.
	Decided func(openid string, rules []string)

	// Delivery, when set, adjusts the outbox's options after the
	// defaults are filled in: tests shorten backoffs with it.
	Delivery func(*delivery.Options)
}

// DefaultMaxClockSkew is Config.MaxClockSkew's default.
const DefaultMaxClockSkew = 5 * time.Minute

// dedupeTTL is how long a callback's retry mark is kept: for as long as a
// replay of its (query, body) could pass the freshness check — twice the
// skew, or twice the time a query stays bound when the check is off.
func dedupeTTL(skew time.Duration) time.Duration {
	if skew <= 0 {
		return 2 * handlers.UnboundQueryTTL
	}
	return max(delivery.DefaultDedupeTTL, 2*skew)
}

// Server is one wired wxreply.
type Server struct {
	cfg     Config
	log     *slog.Logger
	store   store.Store
	client  *wechat.Client
	rules   *rules.Engine
	engine  *delivery.Engine
	handler http.Handler
	http    *http.Server
}

// New wires the parts. It loads the rules (an invalid file stops start-up
// with every problem listed) and opens the store, but starts nothing.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 25 * time.Second
	}
	if cfg.APIBase == "" {
		cfg.APIBase = "https://api.weixin.qq.com"
	}
	// skew is the effective maximum, 0 when the check is off, as
	// handlers.Config takes it.
	skew := cfg.MaxClockSkew
	switch {
	case skew == 0:
		skew = DefaultMaxClockSkew
	case skew < 0:
		skew = 0
	}
	log := cfg.Logger
	var cipher *wechat.Cipher
	if cfg.AESKey != "" {
		var err error
		if cipher, err = wechat.NewCipher(cfg.AESKey, cfg.AppID); err != nil {
			return nil, fmt.Errorf("WECHAT_ENCODING_AES_KEY: %w", err)
		}
	}
	// The store first: a store that cannot be opened is one line, not
	// one after the rules' "loaded" line.
	st, err := store.Open(cfg.Store, store.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("WXREPLY_STORE: %w", err)
	}
	engine, err := rules.NewEngine(cfg.RulesPath, rules.WithLogger(log), rules.WithClock(cfg.Now),
		rules.WithOnReload(func(s *rules.Set) { warnUnsignedWebhooks(log, cfg.WebhookSecret, s) }))
	if err != nil {
		st.Close()
		return nil, err
	}
	if names := engine.Current().WebhookRules(); len(names) > 0 && cfg.WebhookSecret == "" {
		st.Close()
		return nil, fmt.Errorf("WXREPLY_WEBHOOK_SECRET is not set: the webhook items of %s (rule %s) sign their requests with it",
			cfg.RulesPath, strings.Join(names, ", "))
	}
	// A shared store shares the access token too: one fetch for every
	// instance.
	tokens, _ := st.(wechat.TokenStore)
	client := wechat.NewClient(wechat.ClientOptions{
		TokenStore:     tokens,
		BaseURL:        cfg.APIBase,
		AppID:          cfg.AppID,
		AppSecret:      cfg.AppSecret,
		UseLegacyToken: cfg.LegacyToken,
		MaxConns:       cfg.InFlight,
		MediaStore:     mediaStore{st: st, now: cfg.Now},
		Logger:         log,
	})
	do := delivery.Options{
		Store:    st,
		Client:   client,
		InFlight: cfg.InFlight,
		MaxAge:   cfg.MaxRetryAge,
		Lease:    cfg.Lease,
		Typing:   cfg.Typing,
		Logger:   log,
		Now:      cfg.Now,
		// A replay of a callback's (query, body) is recognised as the
		// retry it looks like for as long as its timestamp is fresh.
		DedupeTTL: dedupeTTL(skew),
	}
	if cfg.Delivery != nil {
		cfg.Delivery(&do)
	}
	sent := &sending{now: cfg.Now}
	do.OnResult = sent.observe(do.OnResult)
	outbox := delivery.New(do)
	webhooks := newWebhooks(cfg.WebhookSecret, log, cfg.Now)
	responder := &Responder{Rules: engine, Outbox: outbox, Logger: log, Now: cfg.Now, Matched: engine.CountMatch, Webhooks: webhooks, Decided: cfg.Decided}
	metrics := handlers.NewMetrics()
	metrics.Registry.MustRegister(outboxCollector(outbox, st), rulesCollector(engine), tokenCollector(client), sent, webhooks.calls)
	if lb := cfg.LogBuffer; lb != nil {
		metrics.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "wxreply_log_lines_dropped_total",
			Help: "Log lines dropped because the log's file fell behind by more than 8 MB.",
		}, func() float64 { return float64(lb.Dropped()) }))
	}
	hc := handlers.Config{
		Token:     cfg.Token,
		Cipher:    cipher,
		Responder: responder,
		Logger:    log,
		Health: func() error {
			if engine.Current() == nil {
				return errors.New("rules not loaded")
			}
			return st.Healthy()
		},
		Report:  healthReport(engine, st, outbox, client, sent),
		Now:     cfg.Now,
		Metrics: metrics,

		MaxClockSkew:   skew,
		AllowFrom:      cfg.AllowFrom,
		TrustedProxies: cfg.TrustedProxies,
		APIRate:        cfg.APIRate,
	}
	if cfg.APIKey != "" {
		hc.Push = &handlers.PushConfig{APIKey: cfg.APIKey, Outbox: outbox}
	}
	h := handlers.New(hc)
	return &Server{
		cfg:     cfg,
		log:     log,
		store:   st,
		client:  client,
		rules:   engine,
		engine:  outbox,
		handler: h,
		http: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      10 * time.Second,
			IdleTimeout:       120 * time.Second,
		},
	}, nil
}

// Handler is the HTTP surface, for tests that serve it themselves.
func (s *Server) Handler() http.Handler { return s.handler }

// Outbox is the server's delivery engine.
func (s *Server) Outbox() *delivery.Engine { return s.engine }

// Store is the server's store.
func (s *Server) Store() store.Store { return s.store }

// Rules is the server's hot-reloaded rules.
func (s *Server) Rules() *rules.Engine { return s.rules }

// Run serves on ln until ctx is done, then shuts down: it stops taking
// requests and lets those under way finish (each records its replies
// before it is answered), lets the calls at WeChat finish, and leaves
// everything else in the store for the next start. Each step is bounded
// by the shutdown timeout. SIGHUP (through reload) reloads the rules. It
// returns nil after a clean shutdown.
func (s *Server) Run(ctx context.Context, ln net.Listener, reload <-chan os.Signal) error {
	s.engine.Start()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	var bg sync.WaitGroup
	bg.Add(2)
	go func() {
		defer bg.Done()
		if err := s.rules.Watch(watchCtx); err != nil {
			s.log.Error("rules file watch stopped; SIGHUP still reloads", "error", err)
		}
	}()
	go func() {
		defer bg.Done()
		for {
			select {
			case <-reload:
				s.log.Info("SIGHUP: reloading rules")
				_ = s.rules.Reload() // Reload logs every problem itself
			case <-watchCtx.Done():
				return
			}
		}
	}()

	served := make(chan error, 1)
	go func() { served <- s.http.Serve(ln) }()
	s.log.Info("wxreply serving", "addr", ln.Addr().String(), "rules", s.cfg.RulesPath,
		"store", storeName(s.cfg.Store), "encrypted", s.cfg.AESKey != "", "push_api", s.cfg.APIKey != "")

	var serveErr error
	select {
	case serveErr = <-served:
		s.log.Error("server stopped accepting", "error", serveErr)
	case <-ctx.Done():
	}
	s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	httpErr := s.http.Shutdown(sctx)
	sendErr := s.engine.Shutdown(sctx)
	// Only now: a token fetch or upload shared by sends under way must
	// not be cut off while they finish.
	s.client.Close()
	stopWatch()
	bg.Wait()
	storeErr := s.store.Close()
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	if err := errors.Join(serveErr, httpErr, sendErr, storeErr); err != nil {
		return fmt.Errorf("shutdown incomplete (what was not sent stays in the store): %w", err)
	}
	s.log.Info("shutdown complete")
	return nil
}

// Close releases what New opened, for a server that never ran.
func (s *Server) Close() error {
	s.client.Close()
	return s.store.Close()
}

// storeName is WXREPLY_STORE as a log line may show it: a Redis URL's
// password never is.
func storeName(spec string) string {
	u, err := urlWithoutPassword(spec)
	switch {
	case err == nil:
		return u
	case strings.Contains(spec, "://"):
		return "(a URL that does not parse)" // it may hold a password
	}
	return spec // a directory
}
