// Command wxreply is a WeChat Official Account callback server with a
// rule-based auto-responder. main turns flags and environment into a
// configuration, wires the parts together and runs the chosen subcommand;
// the parts themselves live in handlers/, rules/, wechat/ and tools/.
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wxreply/wxreply/handlers"
	"github.com/wxreply/wxreply/rules"
	"github.com/wxreply/wxreply/tools"
	"github.com/wxreply/wxreply/wechat"
)

const usage = `usage: wxreply [command] [flags]

commands:
  serve              run the callback server (the default)
  check [FILE]       validate a rules file (default: $WXREPLY_RULES or rules.yaml)
  replay -url URL FILE...
                     sign (and encrypt) captured XML as WeChat would and POST it
  sandbox            chat with the rules in the terminal against a fake WeChat API
  send -to OPENID TEXT | -json FILE
                     push a message through a running server's /api/v1

Run 'wxreply COMMAND -h' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, getenv, stderr)
	case "check":
		return check(args, getenv, stdout, stderr)
	case "replay":
		return replay(args, getenv, stdout, stderr)
	case "sandbox":
		return sandbox(args, getenv, stdin, stdout, stderr)
	case "send":
		return send(args, getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "wxreply: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

// config is everything the contract lets an operator set. Each flag
// defaults to its environment variable, so a flag given wins.
type config struct {
	token, appID, appSecret, aesKey string
	apiBase, addr, rulesPath        string
	apiKey                          string

	shutdownTimeout time.Duration
	typing          bool
	legacyToken     bool
	logLevel        string
	logFormat       string
}

func newFlagSet(name string, c *config, getenv func(string) string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("wxreply "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.token, "token", getenv("WECHAT_TOKEN"), "Token from the MP console's server settings (WECHAT_TOKEN)")
	fs.StringVar(&c.appID, "appid", getenv("WECHAT_APPID"), "the account's AppID (WECHAT_APPID)")
	fs.StringVar(&c.appSecret, "appsecret", getenv("WECHAT_APPSECRET"), "the AppSecret (WECHAT_APPSECRET)")
	fs.StringVar(&c.aesKey, "aes-key", getenv("WECHAT_ENCODING_AES_KEY"), "43-character EncodingAESKey; empty: plaintext mode (WECHAT_ENCODING_AES_KEY)")
	fs.StringVar(&c.apiBase, "api-base", envOr(getenv, "WECHAT_API_BASE", "https://api.weixin.qq.com"), "base URL of the WeChat API (WECHAT_API_BASE)")
	fs.StringVar(&c.addr, "addr", envOr(getenv, "WXREPLY_ADDR", ":8080"), "listen address (WXREPLY_ADDR)")
	fs.StringVar(&c.rulesPath, "rules", envOr(getenv, "WXREPLY_RULES", "rules.yaml"), "the rules file (WXREPLY_RULES)")
	fs.StringVar(&c.apiKey, "api-key", getenv("WXREPLY_API_KEY"), "bearer key for the push API under /api/v1; empty: push API off (WXREPLY_API_KEY)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", envDuration(getenv, "WXREPLY_SHUTDOWN_TIMEOUT", 25*time.Second), "how long SIGTERM waits for requests and queued replies (WXREPLY_SHUTDOWN_TIMEOUT)")
	fs.BoolVar(&c.typing, "typing", getenv("WXREPLY_TYPING") == "true", "send the typing indicator before replies that wait (WXREPLY_TYPING)")
	fs.BoolVar(&c.legacyToken, "legacy-token", getenv("WXREPLY_LEGACY_TOKEN") == "true", "fetch tokens from /cgi-bin/token instead of stable_token (WXREPLY_LEGACY_TOKEN)")
	fs.StringVar(&c.logLevel, "log-level", envOr(getenv, "WXREPLY_LOG_LEVEL", "info"), "debug, info, warn or error (WXREPLY_LOG_LEVEL)")
	fs.StringVar(&c.logFormat, "log-format", envOr(getenv, "WXREPLY_LOG_FORMAT", "json"), "json or text (WXREPLY_LOG_FORMAT)")
	return fs
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func envDuration(getenv func(string) string, key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(getenv(key)); err == nil {
		return d
	}
	return def
}

// validate reports the first configuration problem as one clear line.
// It never repeats a secret's value.
func (c *config) validate() error {
	if c.token == "" {
		return errors.New("WECHAT_TOKEN (or -token) is required: the Token typed into the MP console's server settings")
	}
	if c.aesKey != "" {
		if len(c.aesKey) != 43 {
			return fmt.Errorf("WECHAT_ENCODING_AES_KEY must be 43 characters, got %d", len(c.aesKey))
		}
		if _, err := base64.StdEncoding.DecodeString(c.aesKey + "="); err != nil {
			return errors.New("WECHAT_ENCODING_AES_KEY is not valid base64: copy it again from the MP console")
		}
		if c.appID == "" {
			return errors.New("WECHAT_APPID (or -appid) is required with an EncodingAESKey: encrypted messages are checked against it")
		}
	}
	if _, err := os.Stat(c.rulesPath); err != nil {
		return fmt.Errorf("rules file %s is unreadable: %w", c.rulesPath, errors.Unwrap(err))
	}
	if c.shutdownTimeout <= 0 {
		return errors.New("-shutdown-timeout must be positive")
	}
	return nil
}

func (c *config) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", c.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.logFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: want json or text", c.logFormat)
}

// app is one wired server: rules, the sending side and the HTTP surface.
type app struct {
	cfg    *config
	log    *slog.Logger
	engine *rules.Engine
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
		Client: client,
		Window: window,
		Typing: c.typing,
		Logger: log,
	})
	responder := &rules.Responder{Rules: engine, Sender: sender, Window: window, Logger: log}
	cfg := handlers.Config{
		Token:     c.token,
		Cipher:    cipher,
		Responder: responder,
		Logger:    log,
		Ready:     func() bool { return engine.Current() != nil },
	}
	if c.apiKey != "" {
		cfg.Push = &handlers.PushConfig{APIKey: c.apiKey, Sender: sender, Window: window}
	}
	return &app{
		cfg:    c,
		log:    log,
		engine: engine,
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
// accepting, finishes in-flight requests and drains the reply queue, all
// within the shutdown timeout. SIGHUP (delivered through reload) reloads
// the rules.
func (a *app) run(ctx context.Context, ln net.Listener, reload <-chan os.Signal) error {
	a.sender.Start()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		if err := a.engine.Watch(watchCtx); err != nil {
			a.log.Error("rules file watch stopped; SIGHUP still reloads", "error", err)
		}
	}()
	go func() {
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

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	a.log.Info("shutting down", "timeout", a.cfg.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.shutdownTimeout)
	defer cancel()
	httpErr := a.http.Shutdown(sctx)
	sendErr := a.sender.Shutdown(sctx)
	stopWatch()
	<-watchDone
	if err := errors.Join(httpErr, sendErr); err != nil {
		return fmt.Errorf("shutdown incomplete: %w", err)
	}
	a.log.Info("shutdown complete")
	return nil
}

func serve(args []string, getenv func(string) string, stderr io.Writer) int {
	var c config
	fs := newFlagSet("serve", &c, getenv, stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := c.validate(); err != nil {
		fmt.Fprintln(stderr, "wxreply:", err)
		return 2
	}
	log, err := c.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "wxreply:", err)
		return 2
	}
	if c.appID == "" || c.appSecret == "" {
		log.Warn("WECHAT_APPID or WECHAT_APPSECRET not set: passive replies work, customer-service replies will fail")
	}
	a, err := newApp(&c, log)
	if err != nil {
		fmt.Fprintln(stderr, "wxreply:", err)
		return 2
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		fmt.Fprintln(stderr, "wxreply:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := a.run(ctx, ln, hup); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("wxreply stopped", "error", err)
		return 1
	}
	return 0
}

func check(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wxreply check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	path := envOr(getenv, "WXREPLY_RULES", "rules.yaml")
	if fs.NArg() > 0 {
		path = fs.Arg(0)
	}
	problems := rules.Check(path)
	for _, p := range problems {
		fmt.Fprintln(stdout, p.String())
	}
	if len(problems) > 0 {
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return 0
}

// localURL is the loopback URL of a server listening on addr, the default
// target of the tools that talk to a running server.
func localURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://127.0.0.1:8080"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

func replay(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	var c config
	fs := newFlagSet("replay", &c, getenv, stderr)
	target := fs.String("url", "", "the server's callback URL (default: http://127.0.0.1:PORT/wechat, PORT from -addr)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: wxreply replay [-url URL] FILE...\n\nSigns each captured callback XML as WeChat would (and encrypts it in safe mode\nwhen an EncodingAESKey is set), posts it and prints the answer.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	if *target == "" {
		*target = localURL(c.addr) + "/wechat"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := tools.Replay(ctx, tools.ReplayOptions{
		URL: *target, Token: c.token, AESKey: c.aesKey, AppID: c.appID,
		Stdout: stdout, Stderr: stderr,
	}, fs.Args()...)
	if err != nil {
		fmt.Fprintln(stderr, "wxreply replay:", err)
		return 1
	}
	return 0
}

func send(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	var c config
	fs := newFlagSet("send", &c, getenv, stderr)
	server := fs.String("server", "", "the running server's base URL (default: http://127.0.0.1:PORT, PORT from -addr)")
	to := fs.String("to", "", "the user's openid")
	jsonFile := fs.String("json", "", "send this file: a full customer-service message as JSON")
	key := fs.String("idempotency-key", "", "the same key never sends twice: makes retrying this command safe")
	wait := fs.Bool("wait", false, "poll until the message is delivered or failed; exit 1 if it failed")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long -wait waits")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: wxreply send [-server URL] -to OPENID [-idempotency-key K] [-wait] TEXT\n       wxreply send [-server URL] -json FILE [-wait]\n\nPushes one message through a running server's /api/v1 (WXREPLY_API_KEY) and\nprints its id.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o := tools.SendOptions{
		Server: *server, APIKey: c.apiKey, To: *to, Text: strings.Join(fs.Args(), " "),
		IdempotencyKey: *key, Wait: *wait, Stdout: stdout,
	}
	if o.Server == "" {
		o.Server = localURL(c.addr)
	}
	if *jsonFile != "" {
		b, err := os.ReadFile(*jsonFile)
		if err != nil {
			fmt.Fprintln(stderr, "wxreply send:", err)
			return 2
		}
		o.JSON = b
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := tools.Send(ctx, o); err != nil {
		fmt.Fprintln(stderr, "wxreply send:", err)
		return 1
	}
	return 0
}

func sandbox(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wxreply sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := config{logFormat: "text", shutdownTimeout: 5 * time.Second}
	fs.StringVar(&c.rulesPath, "rules", envOr(getenv, "WXREPLY_RULES", "rules.yaml"), "the rules file (WXREPLY_RULES)")
	fs.StringVar(&c.logLevel, "log-level", "debug", "debug, info, warn or error")
	logFile := fs.String("log", "", "append the server's logs to FILE (default: discarded, so the chat stays readable)")
	openid := fs.String("openid", tools.SandboxOpenID, "the openid you chat as")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: wxreply sandbox [-rules FILE] [-log FILE]\n\nRuns the server with the rules against a fake WeChat API on this machine and\nlets you chat as a WeChat user. No account, no network. Type /help inside.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	logw := io.Discard
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(stderr, "wxreply sandbox:", err)
			return 2
		}
		defer f.Close()
		logw = f
	}
	log, err := c.logger(logw)
	if err != nil {
		fmt.Fprintln(stderr, "wxreply sandbox:", err)
		return 2
	}
	// The same wiring as serve, with the sandbox's account and fake API.
	serveSandbox := func(ctx context.Context, ln net.Listener, s tools.SandboxServer) error {
		sc := c
		sc.token, sc.appID, sc.appSecret, sc.apiBase, sc.apiKey = s.Token, s.AppID, s.AppSecret, s.APIBase, s.APIKey
		a, err := newApp(&sc, log)
		if err != nil {
			return err
		}
		if err := a.run(ctx, ln, nil); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
	err = tools.Sandbox(context.Background(), tools.SandboxOptions{
		Serve: serveSandbox, RulesPath: c.rulesPath, OpenID: *openid,
		In: stdin, Out: stdout, Echo: !isTerminal(stdin),
	})
	if err != nil {
		fmt.Fprintln(stderr, "wxreply", err)
		return 1
	}
	return 0
}

// isTerminal reports whether r is a terminal: a person typing sees their
// own input, so the sandbox echoes lines only when it is not.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
