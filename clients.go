package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wxreply/wxreply/server"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/tools"
)

// The commands in this file are clients of a server: replay and send
// talk to a running one, sandbox runs one against a fake WeChat API.

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
	fs := commandFlagSet("replay", &c, getenv, stderr, "token", "aes-key", "appid", "addr")
	target := fs.String("url", "", "the server's callback URL (default: http://127.0.0.1:PORT/wechat, PORT from -addr)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: wxreply replay [-url URL] FILE...\n\nSigns each captured callback XML as WeChat would (and encrypts it in safe mode\nwhen an EncodingAESKey is set), posts it and prints the answer.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := c.parse(fs, args); err != nil {
		return parseFailed(err)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	if err := c.envProblem(fs); err != nil {
		fmt.Fprintln(stderr, "wxreply replay:", err)
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
	fs := commandFlagSet("send", &c, getenv, stderr, "api-key", "addr")
	server := fs.String("server", "", "the running server's base URL (default: http://127.0.0.1:PORT, PORT from -addr)")
	to := fs.String("to", "", "the user's openid, to send them TEXT")
	jsonFile := fs.String("json", "", "send this file instead: a whole customer-service or template message as JSON, touser included")
	key := fs.String("idempotency-key", "", "the same key never sends twice: makes retrying this command safe")
	wait := fs.Bool("wait", false, "poll until the message is delivered or failed; exit 1 if it failed")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long -wait waits")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: wxreply send [-server URL] -to OPENID [-idempotency-key K] [-wait] TEXT\n       wxreply send [-server URL] -json FILE [-idempotency-key K] [-wait]\n\nPushes one message through a running server's /api/v1 (WXREPLY_API_KEY) and\nprints its id.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := c.parse(fs, args); err != nil {
		return parseFailed(err)
	}
	// A -json file is the whole message, its touser included: -to or a
	// TEXT beside it would be ignored, or contradict it.
	switch {
	case *jsonFile != "" && *to != "":
		fmt.Fprintln(stderr, "wxreply send: -to and -json do not go together: the -json file names the user (touser)")
		return 2
	case *jsonFile != "" && fs.NArg() > 0:
		fmt.Fprintln(stderr, "wxreply send: give a TEXT or -json FILE, not both")
		return 2
	}
	if err := c.envProblem(fs); err != nil {
		fmt.Fprintln(stderr, "wxreply send:", err)
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
	c := config{logFormat: "text", shutdownTimeout: 5 * time.Second, store: store.Memory, workers: 16, maxRetryAge: time.Hour}
	fs.StringVar(&c.rulesPath, "rules", envOr(getenv, "WXREPLY_RULES", "rules.yaml"), "the rules file (WXREPLY_RULES)")
	fs.StringVar(&c.logLevel, "log-level", "debug", "debug, info, warn or error")
	logFile := fs.String("log", "", "append the server's logs to FILE (default: discarded, so the chat stays readable)")
	openid := fs.String("openid", tools.SandboxOpenID, "the openid you chat as")
	showRule := fs.Bool("show-rule", false, "show which rule answered each message (/rules on|off toggles it)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: wxreply sandbox [-rules FILE] [-log FILE] [-show-rule]\n\nRuns the server with the rules against a fake WeChat API on this machine and\nlets you chat as a WeChat user. No account, no network. Type /help inside.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return parseFailed(err)
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
	// The same wiring as serve, with the sandbox's account and fake API,
	// telling the sandbox what the rules did.
	serveSandbox := func(ctx context.Context, ln net.Listener, s tools.SandboxServer) error {
		sc := c
		sc.token, sc.appID, sc.appSecret, sc.apiBase = s.Token, s.AppID, s.AppSecret, s.APIBase
		cfg := sc.server(log)
		cfg.Decided = s.Decided
		srv, err := server.New(cfg)
		if err != nil {
			return err
		}
		srv.Rules().ReportReloads(s.Reloaded)
		s.Watch(srv.Outbox())
		return srv.Run(ctx, ln, nil)
	}
	err = tools.Sandbox(context.Background(), tools.SandboxOptions{
		Serve: serveSandbox, RulesPath: c.rulesPath, OpenID: *openid, ShowRules: *showRule,
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
