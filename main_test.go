package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// runWith runs the command line in process with env as the environment.
func runWith(env map[string]string, args ...string) (code int, stdout, stderr string) {
	var out, errOut strings.Builder
	code = run(args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelpAndUsage(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // in stdout
		wantErr  string // in stderr
	}{
		{"-h", []string{"-h"}, 0, "commands:", ""},
		{"--help", []string{"--help"}, 0, "commands:", ""},
		{"help", []string{"help"}, 0, "commands:", ""},
		{"serve -h", []string{"serve", "-h"}, 0, "", "-shutdown-timeout"},
		{"check -h", []string{"check", "-h"}, 0, "", "usage: wxreply check"},
		{"replay -h", []string{"replay", "-h"}, 0, "", "usage: wxreply replay"},
		{"send -h", []string{"send", "-h"}, 0, "", "usage: wxreply send"},
		{"sandbox -h", []string{"sandbox", "-h"}, 0, "", "usage: wxreply sandbox"},
		{"unknown command", []string{"serv"}, 2, "", `unknown command "serv"`},
		{"unknown flag", []string{"-nosuch"}, 2, "", "-nosuch"},
		{"serve with an argument", []string{"serve", "rules.yaml"}, 2, "", `unexpected argument "rules.yaml"`},
		{"check with two files", []string{"check", "a.yaml", "b.yaml"}, 2, "", "usage: wxreply check"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runWith(nil, tt.args...)
			if code != tt.wantCode || !strings.Contains(out, tt.wantOut) || !strings.Contains(errOut, tt.wantErr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, %q in stdout, %q in stderr",
					code, out, errOut, tt.wantCode, tt.wantOut, tt.wantErr)
			}
		})
	}
}

// TestServeConfigErrors: each bad configuration stops serve before it
// listens, with exit 2 and exactly one line that names the problem and
// repeats no secret.
func TestServeConfigErrors(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte("default:\n  reply:\n    - text: hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const aesKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	secrets := []string{"s3cret-token", aesKey, "s3cret-appsecret", "s3cret-apikey", "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"}
	good := map[string]string{
		"WECHAT_TOKEN": "s3cret-token", "WECHAT_APPID": "wx1", "WECHAT_APPSECRET": "s3cret-appsecret",
		"WXREPLY_API_KEY": "s3cret-apikey", "WXREPLY_RULES": rulesFile,
		// Never reached: every case fails before listening.
		"WXREPLY_ADDR": "256.0.0.1:bad",
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"missing token", map[string]string{"WECHAT_TOKEN": ""}, nil, "WECHAT_TOKEN"},
		{"short AES key", map[string]string{"WECHAT_ENCODING_AES_KEY": "tooshort"}, nil, "43 characters"},
		{"AES key not base64", map[string]string{"WECHAT_ENCODING_AES_KEY": strings.Repeat("!", 43)}, nil, "base64"},
		{"AES key without AppID", map[string]string{"WECHAT_ENCODING_AES_KEY": aesKey, "WECHAT_APPID": ""}, nil, "WECHAT_APPID"},
		{"rules file missing", map[string]string{"WXREPLY_RULES": filepath.Join(dir, "nope.yaml")}, nil, "nope.yaml is unreadable"},
		{"rules file is a directory", map[string]string{"WXREPLY_RULES": dir}, nil, "is a directory"},
		{"invalid rules", map[string]string{"WXREPLY_RULES": writeFile(t, dir, "bad.yaml", "rules: [{name: a}]\n")}, nil, "bad.yaml:"},
		{"shutdown timeout not a duration", map[string]string{"WXREPLY_SHUTDOWN_TIMEOUT": "25"}, nil, `WXREPLY_SHUTDOWN_TIMEOUT="25"`},
		{"a flag overrides a bad variable", map[string]string{"WXREPLY_SHUTDOWN_TIMEOUT": "25", "WXREPLY_RULES": filepath.Join(dir, "nope.yaml")},
			[]string{"-shutdown-timeout", "5s"}, "nope.yaml"},
		{"negative shutdown timeout", nil, []string{"-shutdown-timeout", "-1s"}, "-shutdown-timeout"},
		{"typing not a boolean", map[string]string{"WXREPLY_TYPING": "yes please"}, nil, "WXREPLY_TYPING"},
		{"workers not a number", map[string]string{"WXREPLY_WORKERS": "eight"}, nil, `WXREPLY_WORKERS="eight"`},
		{"no workers", map[string]string{"WXREPLY_WORKERS": "0"}, nil, "WXREPLY_WORKERS (or -workers) must be from 1 to 1000"},
		{"queue size flag", nil, []string{"-queue-size", "0"}, "WXREPLY_QUEUE_SIZE (or -queue-size) must be positive"},
		{"legacy token not a boolean", map[string]string{"WXREPLY_LEGACY_TOKEN": "on"}, nil, "WXREPLY_LEGACY_TOKEN"},
		{"API base not a URL", map[string]string{"WECHAT_API_BASE": "api.weixin.qq.com"}, nil, "WECHAT_API_BASE"},
		{"bad log level", map[string]string{"WXREPLY_LOG_LEVEL": "loud"}, nil, "-log-level"},
		{"bad log format", map[string]string{"WXREPLY_LOG_FORMAT": "xml"}, nil, "-log-format"},
		{"bad listen address", map[string]string{"WXREPLY_LOG_LEVEL": "error"}, nil, "256.0.0.1:bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range good {
				env[k] = v
			}
			for k, v := range tt.env {
				env[k] = v
			}
			code, _, errOut := runWith(env, append([]string{"serve"}, tt.args...)...)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr %q", code, errOut)
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tt.want) {
				t.Fatalf("stderr %q, want one line naming %q", errOut, tt.want)
			}
			for _, s := range secrets {
				if strings.Contains(errOut, s) {
					t.Fatalf("the error repeats a secret: %q", errOut)
				}
			}
		})
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSenderSizesReachTheSender checks that -workers and -queue-size are
// wired: with a queue of one, a second message is refused.
func TestSenderSizesReachTheSender(t *testing.T) {
	c := config{token: "t", apiBase: "http://127.0.0.1:1", rulesPath: filepath.Join("test", "testdata", "rules.yaml"),
		shutdownTimeout: time.Second, workers: 1, queueSize: 1, logLevel: "error", logFormat: "text"}
	a, err := newApp(&c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	msg := func() wechat.Outgoing {
		return wechat.Outgoing{Custom: &wechat.CustomMessage{ToUser: "o1", MsgType: "text", Text: &wechat.Text{Content: "x"}}}
	}
	if _, err := a.sender.Enqueue(msg()); err != nil {
		t.Fatalf("first message refused: %v", err)
	}
	if _, err := a.sender.Enqueue(msg()); !errors.Is(err, wechat.ErrQueueFull) {
		t.Fatalf("second message into a queue of one: %v, want ErrQueueFull", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_ = a.sender.Shutdown(ctx)
}
