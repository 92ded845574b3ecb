// Command wxreply is a WeChat Official Account callback server with a
// rule-based auto-responder. main turns flags and environment into a
// configuration, wires the parts together and runs the chosen subcommand;
// the parts themselves live in handlers/, rules/, wechat/ and tools/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/wxreply/wxreply/rules"
	"github.com/wxreply/wxreply/server"
)

const usage = `usage: wxreply [command] [flags]

commands:
  serve              run the callback server (the default)
  check [FILE...]    validate rules files (default: $WXREPLY_RULES or rules.yaml)
  replay -url URL FILE...
                     sign (and encrypt) captured XML as WeChat would and POST it
  sandbox            chat with the rules in the terminal against a fake WeChat API
  send -to OPENID TEXT | -json FILE
                     push a message through a running server's /api/v1
  qrcode [-permanent] [-expire DURATION] SCENE
                     create a parametric QR code that a scene: rule answers
  menu push [FILE] | menu pull
                     create the rules file's menu: on WeChat, or print WeChat's
  version            print the version and the Go version it was built with

Run 'wxreply COMMAND -h' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code, 0 for
// success, 1 when the command ran and failed, 2 for a usage or
// configuration error.
func run(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		switch args[0] {
		case "help", "-h", "-help", "--help":
			fmt.Fprint(stdout, usage)
			return 0
		case "-version", "--version":
			args = append([]string{"version"}, args[1:]...)
		}
		if len(args[0]) > 0 && args[0][0] != '-' {
			cmd, args = args[0], args[1:]
		}
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
	case "qrcode":
		return qrcode(args, getenv, stdout, stderr)
	case "menu":
		return menuCommand(args, getenv, stdout, stderr)
	case "version":
		return versionCommand(args, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "wxreply: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

// parseFailed is the exit code after a flag.FlagSet's Parse failed: 0 for
// -h, which printed the usage as asked, 2 otherwise.
func parseFailed(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

func serve(args []string, getenv func(string) string, stderr io.Writer) int {
	var c config
	fs := newFlagSet("serve", &c, getenv, stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: wxreply [serve] [flags]\n\nRuns the callback server. Every flag defaults to the environment variable\nnamed after it; secrets belong in the environment, not on the command line.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := c.parse(fs, args); err != nil {
		return parseFailed(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wxreply serve: unexpected argument %q (flags go before it; see wxreply serve -h)\n", fs.Arg(0))
		return 2
	}
	if err := c.validate(); err != nil {
		fmt.Fprintln(stderr, "wxreply:", err)
		return 2
	}
	// The server's logs go through a buffer: a write(2) per line would
	// cost the callbacks more than the rest of their logging.
	c.logBuffer = server.NewLogBuffer(stderr)
	defer c.logBuffer.Close()
	// fail writes a start-up error after the log lines before it.
	fail := func(format string, args ...any) int {
		c.logBuffer.Close()
		fmt.Fprintf(stderr, "wxreply: "+format+"\n", args...)
		return 2
	}
	log, err := c.logger(c.logBuffer)
	if err != nil {
		return fail("%v", err)
	}
	// Signals are caught from here on: a SIGTERM while the rules load
	// still shuts down cleanly, and SIGHUP never kills the process.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(term)
	go func() {
		select {
		case sig := <-term:
			// Stop catching before the shutdown starts: a second signal
			// ends the process at once, for whoever cannot wait for the
			// drain.
			signal.Stop(term)
			log.Info("signal received: shutting down gracefully; send it again to exit at once", "signal", sig.String())
			cancel()
		case <-ctx.Done():
		}
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	srv, err := server.New(c.server(log))
	if err != nil {
		return fail("%v", err)
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		srv.Close()
		return fail("cannot listen on %s (WXREPLY_ADDR): %v", c.addr, err)
	}
	if c.appID == "" || c.appSecret == "" {
		log.Warn("WECHAT_APPID or WECHAT_APPSECRET not set: passive replies work, customer-service replies will fail")
	}
	if c.queueSize != 0 {
		log.Warn("WXREPLY_QUEUE_SIZE is ignored: the outbox is bounded by the store, not by memory")
	}
	if err := srv.Run(ctx, ln, hup); err != nil {
		log.Error("wxreply stopped", "error", err)
		return 1
	}
	return 0
}

func check(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wxreply check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: wxreply check [FILE...]\n\nValidates rules files (default: $WXREPLY_RULES or rules.yaml): one\nFILE:LINE:COL: message line per problem, FILE:LINE:COL: warning: message for\nwhat loads but is probably a mistake; exit 0 when no file has an error,\n1 otherwise.")
	}
	if err := fs.Parse(args); err != nil {
		return parseFailed(err)
	}
	paths := fs.Args()
	if len(paths) == 0 {
		paths = []string{envOr(getenv, "WXREPLY_RULES", "rules.yaml")}
	}
	code := 0
	for _, path := range paths {
		errs, warnings := 0, 0
		for _, p := range rules.Check(path) {
			fmt.Fprintln(stdout, p.String())
			if p.Warning {
				warnings++
			} else {
				errs++
			}
		}
		switch {
		case errs > 0:
			code = 1
		case warnings == 1:
			fmt.Fprintf(stdout, "%s: ok, 1 warning\n", path)
		case warnings > 1:
			fmt.Fprintf(stdout, "%s: ok, %d warnings\n", path, warnings)
		default:
			fmt.Fprintf(stdout, "%s: ok\n", path)
		}
	}
	return code
}
