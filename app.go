package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wxreply/wxreply/handlers"
	"github.com/wxreply/wxreply/rules"
	"github.com/wxreply/wxreply/wechat"
)

// app is one wired server: rules, the sending side and the HTTP surface.
type app struct {
	cfg    *config
	log    *slog.Logger
	engine *rules.Engine
	client *wechat.Client
	sender *wechat.Sender
	http   *http.Server
}

// newApp wires the parts. It loads the rules (an invalid file stops
// start-up with every problem listed) but starts nothing.
func newApp(c *config, log *slog.Logger) (*app, error) {
	var cipher *wechat.Cipher
	if c.aesKey != "" {
		var err error
		if cipher, err = wechat.NewCipher(c.aesKey, c.appID); err != nil {
			return nil, fmt.Errorf("WECHAT_ENCODING_AES_KEY: %w", err)
		}
	}
	engine, err := rules.NewEngine(c.rulesPath, rules.WithLogger(log))
	if err != nil {
		return nil, err
	}
	client := wechat.NewClient(wechat.ClientOptions{
		BaseURL:        c.apiBase,
		AppID:          c.appID,
		AppSecret:      c.appSecret,
		UseLegacyToken: c.legacyToken,
		Logger:         log,
	})
	window := wechat.NewWindow(wechat.DefaultWindow)
	sender := wechat.NewSender(wechat.SenderOptions{
		Client:    client,
		Window:    window,
		Workers:   c.workers,
		QueueSize: c.queueSize,
		Typing:    c.typing,
		Logger:    log,
	})
	responder := &rules.Responder{Rules: engine, Sender: sender, Window: window, Logger: log}
	metrics := handlers.NewMetrics()
	metrics.Registry.MustRegister(handlers.SenderCollector(sender.Stats), rulesCollector(engine))
	cfg := handlers.Config{
		Token:     c.token,
		Cipher:    cipher,
		Responder: responder,
		Logger:    log,
		Ready:     func() bool { return engine.Current() != nil },
		Metrics:   metrics,
	}
	if c.apiKey != "" {
		cfg.Push = &handlers.PushConfig{APIKey: c.apiKey, Sender: sender, Window: window}
	}
	return &app{
		cfg:    c,
		log:    log,
		engine: engine,
		client: client,
		sender: sender,
		http: &http.Server{
			Handler:           handlers.New(cfg),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      10 * time.Second,
			IdleTimeout:       120 * time.Second,
		},
	}, nil
}

// run serves on ln until ctx is done, then shuts down gracefully: it stops
// accepting, finishes in-flight requests and only then drains the reply
// queue (those requests may still queue replies), all within the shutdown
// timeout. SIGHUP (delivered through reload) reloads the rules. It returns
// nil after a clean shutdown.
func (a *app) run(ctx context.Context, ln net.Listener, reload <-chan os.Signal) error {
	a.sender.Start()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	var bg sync.WaitGroup
	bg.Add(2)
	go func() {
		defer bg.Done()
		if err := a.engine.Watch(watchCtx); err != nil {
			a.log.Error("rules file watch stopped; SIGHUP still reloads", "error", err)
		}
	}()
	go func() {
		defer bg.Done()
		for {
			select {
			case <-reload:
				a.log.Info("SIGHUP: reloading rules")
				_ = a.engine.Reload() // Reload logs every problem itself
			case <-watchCtx.Done():
				return
			}
		}
	}()

	served := make(chan error, 1)
	go func() { served <- a.http.Serve(ln) }()
	a.log.Info("wxreply serving", "addr", ln.Addr().String(), "rules", a.cfg.rulesPath,
		"encrypted", a.cfg.aesKey != "", "push_api", a.cfg.apiKey != "")

	var serveErr error
	select {
	case serveErr = <-served:
		// The listener failed: still deliver what was already queued.
		a.log.Error("server stopped accepting", "error", serveErr)
	case <-ctx.Done():
	}
	a.log.Info("shutting down", "timeout", a.cfg.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.shutdownTimeout)
	defer cancel()
	httpErr := a.http.Shutdown(sctx)
	sendErr := a.sender.Shutdown(sctx)
	// Only now: a token fetch or upload shared by queued sends must not be
	// cut off while the queue drains.
	a.client.Close()
	stopWatch()
	bg.Wait()
	if err := errors.Join(serveErr, httpErr, sendErr); err != nil {
		return fmt.Errorf("shutdown incomplete: %w", err)
	}
	a.log.Info("shutdown complete")
	return nil
}

// rulesCollector exposes how many rules are in force, so a reload that
// was refused (the count stays) or emptied the file shows on a dashboard.
func rulesCollector(engine *rules.Engine) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wxreply_rules",
		Help: "Rules in force, from the last rules file that loaded.",
	}, func() float64 {
		if s := engine.Current(); s != nil {
			return float64(s.Len())
		}
		return 0
	})
}
