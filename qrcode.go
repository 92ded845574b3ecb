package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// qrcode creates a parametric QR code: a rule with `scene:` answers its
// scans (README, "QR codes and scenes").
func qrcode(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	var c config
	fs := commandFlagSet("qrcode", &c, getenv, stderr, "appid", "appsecret", "api-base")
	permanent := fs.Bool("permanent", false, "a permanent code (QR_LIMIT_STR_SCENE; at most 100,000 an account) instead of a temporary one")
	expire := fs.Duration("expire", wechat.MaxQRExpire, "how long a temporary code lives, from 60s to 720h (30 days)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: wxreply qrcode [-permanent] [-expire DURATION] SCENE\n\nCreates a parametric QR code for SCENE (1 to 64 bytes) with the account's\ncredentials and prints its ticket, the URL it encodes and its image's URL.\nScanning it sends subscribe with EventKey qrscene_SCENE to a new follower and\nSCAN with EventKey SCENE to a follower: `match: {scene: SCENE}` answers both.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := c.parse(fs, args); err != nil {
		return parseFailed(err)
	}
	usageErr := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "wxreply qrcode: "+format+"\n", args...)
		return 2
	}
	expireSet := false
	fs.Visit(func(f *flag.Flag) { expireSet = expireSet || f.Name == "expire" })
	switch {
	case fs.NArg() == 0:
		fs.Usage()
		return 2
	case fs.NArg() > 1:
		return usageErr("one SCENE, got %d arguments (flags go before it)", fs.NArg())
	case *permanent && expireSet:
		return usageErr("-expire and -permanent do not go together: a permanent code never expires")
	case !*permanent && *expire > wechat.MaxQRExpire:
		return usageErr("-expire %s is over WeChat's 30 days (720h)", *expire)
	case !*permanent && *expire < wechat.MinQRExpire:
		return usageErr("-expire %s is under 60s", *expire)
	}
	scene := fs.Arg(0)
	if err := wechat.CheckScene(scene); err != nil {
		return usageErr("%v", err)
	}
	if err := c.envProblem(fs); err != nil {
		return usageErr("%v", err)
	}
	if c.appID == "" || c.appSecret == "" {
		return usageErr("WECHAT_APPID and WECHAT_APPSECRET (or -appid, -appsecret) are required: the code is the account's")
	}
	if u, err := url.Parse(c.apiBase); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageErr("WECHAT_API_BASE %q is not an http or https URL", c.apiBase)
	}
	req := wechat.TemporaryQRCode(scene, *expire)
	if *permanent {
		req = wechat.PermanentQRCode(scene)
	}
	client := wechat.NewClient(wechat.ClientOptions{BaseURL: c.apiBase, AppID: c.appID, AppSecret: c.appSecret, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	defer client.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	q, err := client.CreateQRCode(ctx, req)
	if err != nil {
		var ae *wechat.APIError
		if errors.As(err, &ae) {
			fmt.Fprintf(stderr, "wxreply qrcode: WeChat refused: errcode %d: %s\n", ae.Code, ae.Message)
		} else {
			fmt.Fprintln(stderr, "wxreply qrcode:", err)
		}
		return 1
	}
	fmt.Fprintf(stdout, "ticket: %s\n", q.Ticket)
	fmt.Fprintf(stdout, "url: %s\n", q.URL)
	fmt.Fprintf(stdout, "image: %s\n", q.ImageURL())
	if q.ExpireSeconds > 0 {
		fmt.Fprintf(stdout, "expires: %s (in %s)\n", time.Now().Add(time.Duration(q.ExpireSeconds)*time.Second).UTC().Format(time.RFC3339), time.Duration(q.ExpireSeconds)*time.Second)
	} else {
		fmt.Fprintln(stdout, "expires: never")
	}
	return 0
}
