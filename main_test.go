package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/server"
	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
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
		{"check checks every file", []string{"check", "a.yaml", "b.yaml"}, 1, "b.yaml: cannot read", ""},
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
	secrets := []string{"s3cretToken", "s3cret-tok", strings.Repeat("s3cretTok", 4), aesKey, "s3cret-appsecret", "s3cret-apikey", "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", "s3cret-redis"}
	underFile := filepath.Join(rulesFile, "data") // a regular file cannot hold a directory
	good := map[string]string{
		"WECHAT_TOKEN": "s3cretToken", "WECHAT_APPID": "wx1", "WECHAT_APPSECRET": "s3cret-appsecret",
		"WXREPLY_API_KEY": "s3cret-apikey", "WXREPLY_RULES": rulesFile, "WXREPLY_STORE": "memory",
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
		// The MP console takes 3 to 32 letters and digits: no other Token
		// can match the one WeChat signs with.
		{"token too short", map[string]string{"WECHAT_TOKEN": "zq"}, nil, "WECHAT_TOKEN (or -token) must be 3 to 32 English letters and digits"},
		{"token too long", map[string]string{"WECHAT_TOKEN": strings.Repeat("s3cretTok", 4)}, nil, "it is 36 characters long"},
		{"token with a dash", map[string]string{"WECHAT_TOKEN": "s3cret-tok"}, nil, "character 7 is not a letter or digit"},
		{"token flag with a dash", nil, []string{"-token", "s3cret-tok"}, "-token) must be 3 to 32"},
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
		{"max retry age not a duration", map[string]string{"WXREPLY_MAX_RETRY_AGE": "6"}, nil, `WXREPLY_MAX_RETRY_AGE="6"`},
		{"no max retry age", nil, []string{"-max-retry-age", "0s"}, "WXREPLY_MAX_RETRY_AGE (or -max-retry-age) must be positive"},
		// WXREPLY_STORE set but empty is the same as unset (the default,
		// ./data): only the flag can be given empty.
		{"store empty", nil, []string{"-store", ""}, "WXREPLY_STORE (or -store) must name a directory, memory, or a redis:// URL"},
		// The store is opened after the rules are loaded, which logs a
		// line at info.
		{"store under a regular file", map[string]string{"WXREPLY_STORE": underFile, "WXREPLY_LOG_LEVEL": "error"}, nil,
			"store directory " + underFile},
		{"store flag under a regular file", map[string]string{"WXREPLY_LOG_LEVEL": "error"}, []string{"-store", underFile},
			"store directory " + underFile},
		{"redis URL not valid", map[string]string{"WXREPLY_STORE": "redis://:s3cret-redis@127.0.0.1:port/0", "WXREPLY_LOG_LEVEL": "error"}, nil,
			"WXREPLY_STORE: not a valid redis:// URL"},
		{"redis URL with an unknown option", map[string]string{"WXREPLY_STORE": "redis://:s3cret-redis@127.0.0.1:6379/0?colour=red", "WXREPLY_LOG_LEVEL": "error"}, nil,
			"unexpected option: colour"},
		{"lease too short", map[string]string{"WXREPLY_LEASE": "10ms"}, nil, "WXREPLY_LEASE"},
		{"legacy token not a boolean", map[string]string{"WXREPLY_LEGACY_TOKEN": "on"}, nil, "WXREPLY_LEGACY_TOKEN"},
		{"API base not a URL", map[string]string{"WECHAT_API_BASE": "api.weixin.qq.com"}, nil, "WECHAT_API_BASE"},
		{"bad log level", map[string]string{"WXREPLY_LOG_LEVEL": "loud"}, nil, "-log-level"},
		{"bad log format", map[string]string{"WXREPLY_LOG_FORMAT": "xml"}, nil, "-log-format"},
		{"bad listen address", map[string]string{"WXREPLY_LOG_LEVEL": "error"}, nil, "256.0.0.1:bad"},
		{"max clock skew not a duration", map[string]string{"WXREPLY_MAX_CLOCK_SKEW": "300"}, nil, `WXREPLY_MAX_CLOCK_SKEW="300"`},
		{"negative max clock skew", map[string]string{"WXREPLY_MAX_CLOCK_SKEW": "-1m"}, nil, "WXREPLY_MAX_CLOCK_SKEW (or -max-clock-skew) must not be negative"},
		{"allow-list not a network", map[string]string{"WXREPLY_ALLOW_FROM": "10.0.0.0/8, 10.0.0.300"}, nil, `WXREPLY_ALLOW_FROM: "10.0.0.300" is not an IP address`},
		{"allow-list prefix too long", map[string]string{"WXREPLY_ALLOW_FROM": "10.0.0.0/33"}, nil, `WXREPLY_ALLOW_FROM: "10.0.0.0/33" is not a network`},
		{"trusted proxies not networks", map[string]string{"WXREPLY_TRUSTED_PROXIES": "nginx"}, nil, `WXREPLY_TRUSTED_PROXIES: "nginx"`},
		{"a flag overrides a bad allow-list", map[string]string{"WXREPLY_ALLOW_FROM": "nope", "WXREPLY_RULES": filepath.Join(dir, "nope.yaml")},
			[]string{"-allow-from", "10.0.0.0/8"}, "nope.yaml"},
		{"API rate not a number", map[string]string{"WXREPLY_API_RATE": "fast"}, nil, `WXREPLY_API_RATE="fast"`},
		{"negative API rate", map[string]string{"WXREPLY_API_RATE": "-1"}, nil, "WXREPLY_API_RATE (or -api-rate) must be from 0"},
		{"API rate not finite", map[string]string{"WXREPLY_API_RATE": "NaN"}, nil, "WXREPLY_API_RATE (or -api-rate) must be from 0"},
		{"webhook without a secret", map[string]string{"WXREPLY_LOG_LEVEL": "error", "WXREPLY_RULES": writeFile(t, dir, "hook.yaml",
			"rules:\n  - name: order\n    match: {text: {equals: o}}\n    reply: [{webhook: {url: \"https://backend.example.com/o\"}}]\n")},
			nil, "WXREPLY_WEBHOOK_SECRET is not set: the webhook items of "},
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

// TestServerConfig: every setting of the contract reaches server.Config.
func TestServerConfig(t *testing.T) {
	var c config
	fs := newFlagSet("serve", &c, env(map[string]string{
		"WECHAT_TOKEN": "tok", "WECHAT_APPID": "wx1", "WECHAT_APPSECRET": "sec", "WECHAT_ENCODING_AES_KEY": "k",
		"WECHAT_API_BASE": "http://api.example", "WXREPLY_RULES": "r.yaml", "WXREPLY_API_KEY": "key",
		"WXREPLY_STORE": "/var/lib/wxreply", "WXREPLY_SHUTDOWN_TIMEOUT": "7s", "WXREPLY_MAX_RETRY_AGE": "2h",
		"WXREPLY_WORKERS": "9", "WXREPLY_TYPING": "true", "WXREPLY_LEGACY_TOKEN": "1", "WXREPLY_LEASE": "45s",
		"WXREPLY_WEBHOOK_SECRET": "hook", "WXREPLY_MAX_CLOCK_SKEW": "90s", "WXREPLY_ALLOW_FROM": "10.0.0.0/8, 203.0.113.7",
		"WXREPLY_TRUSTED_PROXIES": "192.0.2.0/24", "WXREPLY_API_RATE": "2.5",
	}), io.Discard)
	if err := c.parse(fs, []string{"-workers", "11"}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	got := c.server(log)
	want := server.Config{
		Token: "tok", AppID: "wx1", AppSecret: "sec", AESKey: "k", APIBase: "http://api.example",
		RulesPath: "r.yaml", APIKey: "key", Store: "/var/lib/wxreply",
		ShutdownTimeout: 7 * time.Second, InFlight: 11, MaxRetryAge: 2 * time.Hour, Lease: 45 * time.Second, Typing: true, LegacyToken: true,
		WebhookSecret: "hook", MaxClockSkew: 90 * time.Second,
		AllowFrom:      []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("203.0.113.7/32")},
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, APIRate: 2.5,
		Logger: log,
	}
	if got.Delivery != nil || got.Now != nil {
		t.Errorf("serve sets a test hook: %+v", got)
	}
	got.Delivery, got.Now = nil, nil
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("server config\n%+v\nwant\n%+v", got, want)
	}

	// The defaults.
	var d config
	if err := d.parse(newFlagSet("serve", &d, env(nil), io.Discard), nil); err != nil {
		t.Fatal(err)
	}
	if sc := d.server(log); sc.Store != "data" || sc.InFlight != 128 || sc.MaxRetryAge != 6*time.Hour || sc.ShutdownTimeout != 25*time.Second {
		t.Errorf("defaults: store %q, in flight %d, max retry age %s, shutdown %s; want data, 128, 6h, 25s",
			sc.Store, sc.InFlight, sc.MaxRetryAge, sc.ShutdownTimeout)
	}
	if sc := d.server(log); sc.MaxClockSkew != 5*time.Minute || sc.APIRate != 50 || sc.AllowFrom != nil || sc.TrustedProxies != nil {
		t.Errorf("defaults: max clock skew %s, API rate %v, allow from %v, trusted proxies %v; want 5m, 50, none, none",
			sc.MaxClockSkew, sc.APIRate, sc.AllowFrom, sc.TrustedProxies)
	}
	// 0 turns the clock check and the rate limit off.
	var off config
	if err := off.parse(newFlagSet("serve", &off, env(map[string]string{"WXREPLY_MAX_CLOCK_SKEW": "0", "WXREPLY_API_RATE": "0"}), io.Discard), nil); err != nil {
		t.Fatal(err)
	}
	// (server.Config's zero MaxClockSkew is its default: off is negative.)
	if sc := off.server(log); sc.MaxClockSkew >= 0 || sc.APIRate != 0 || len(off.envErrs) != 0 {
		t.Errorf("0: max clock skew %s, API rate %v, errors %v; want both off", sc.MaxClockSkew, sc.APIRate, off.envErrs)
	}
}

// TestWorkersBoundSendsNotTheQueue: -workers is how many send calls are
// under way at once, over all users; -queue-size bounds nothing any more,
// so with a "queue" of one every push is accepted while WeChat is slow,
// and all are delivered.
func TestWorkersBoundSendsNotTheQueue(t *testing.T) {
	const workers, users, perUser = 2, 5, 3
	fake := wechattest.New()
	gate := make(chan struct{})                  // a send lets one call through
	passed := make(chan struct{}, users*perUser) // and the call says it left the count
	var mu sync.Mutex
	inFlight, maxInFlight := 0, 0
	left := map[string]int{} // per user: items not yet through
	for u := 0; u < users; u++ {
		left[fmt.Sprintf("oW%d", u)] = perUser
	}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == wechat.PathCustomSend {
			// Read the body first: only then does the server notice a
			// client that goes away (and the test's Close not hang).
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var m struct {
				ToUser string `json:"touser"`
			}
			_ = json.Unmarshal(body, &m)
			mu.Lock()
			inFlight++
			maxInFlight = max(maxInFlight, inFlight)
			mu.Unlock()
			select {
			case <-gate:
			case <-r.Context().Done():
			}
			mu.Lock()
			inFlight--
			if r.Context().Err() == nil {
				left[m.ToUser]--
			}
			mu.Unlock()
			if r.Context().Err() != nil {
				return
			}
			passed <- struct{}{}
		}
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close) // after the server's shutdown, which ends the calls held
	c := &config{token: "tok", appID: fake.AppID, appSecret: fake.AppSecret, apiBase: front.URL,
		rulesPath: filepath.Join("test", "testdata", "rules.yaml"), apiKey: pushKey, store: "memory",
		shutdownTimeout: 5 * time.Second, workers: workers, queueSize: 1}
	p := pushClient{t, startServer(t, c)}
	for i := 0; i < perUser; i++ {
		for u := 0; u < users; u++ {
			body := fmt.Sprintf(`{"touser":"oW%d","msgtype":"text","text":{"content":"m%d"}}`, u, i)
			if a := p.do("POST", "/api/v1/messages", body, nil); a.Code != 202 {
				t.Fatalf("push %d/%d refused: %d %s", u, i, a.Code, a.Raw)
			}
		}
	}
	busy := func() (n, usersLeft int) {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range left {
			if l > 0 {
				usersLeft++
			}
		}
		return inFlight, usersLeft
	}
	// Let the calls through one at a time: each time, as many as
	// -workers are at WeChat (or as many users as have messages left,
	// one call each: a user's messages go one at a time), and never more.
	for sent := 0; sent < users*perUser; sent++ {
		_, usersLeft := busy()
		want := min(workers, usersLeft)
		deadline := time.Now().Add(10 * time.Second)
		for n, _ := busy(); n != want; n, _ = busy() {
			if n > want || time.Now().After(deadline) {
				t.Fatalf("%d calls at WeChat after %d went through, want %d", n, sent, want)
			}
			time.Sleep(time.Millisecond)
		}
		gate <- struct{}{}
		<-passed
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(fake.Accepted(wechat.PathCustomSend)) < users*perUser {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d delivered", len(fake.Accepted(wechat.PathCustomSend)), users*perUser)
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if maxInFlight != workers {
		t.Errorf("%d calls at WeChat at once, want -workers %d", maxInFlight, workers)
	}
}

// TestCommandHelp: each command's -h lists its own flags, and none of
// serve's that it does not take.
func TestCommandHelp(t *testing.T) {
	tests := []struct {
		cmd       string
		want, not []string
	}{
		{"serve", []string{"-shutdown-timeout", "-token", "-api-key", "-workers"}, nil},
		{"send", []string{"-to", "-json", "-server", "-wait", "-timeout", "-idempotency-key", "-api-key", "-addr"},
			[]string{"-token", "-shutdown-timeout", "-workers", "-rules", "-aes-key"}},
		{"replay", []string{"-url", "-token", "-aes-key", "-appid", "-addr"},
			[]string{"-api-key", "-shutdown-timeout", "-workers", "-rules", "-store"}},
		{"sandbox", []string{"-rules", "-log", "-log-level", "-openid", "-show-rule"},
			[]string{"-token", "-shutdown-timeout", "-workers", "-api-key"}},
		{"check", []string{"usage: wxreply check"}, []string{"-token", "-shutdown-timeout", "-rules"}},
		{"version", []string{"usage: wxreply version"}, []string{"-token", "-shutdown-timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			code, out, errOut := runWith(nil, tt.cmd, "-h")
			if code != 0 || out != "" {
				t.Fatalf("exit %d, stdout %q", code, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("%s -h does not show %s:\n%s", tt.cmd, w, errOut)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(errOut, n+" ") || strings.Contains(errOut, n+"\n") {
					t.Errorf("%s -h shows %s, a flag it does not take:\n%s", tt.cmd, n, errOut)
				}
			}
			if n := strings.Count(errOut, "\n  -"); tt.cmd != "serve" && n > 10 {
				t.Errorf("%s -h lists %d flags:\n%s", tt.cmd, n, errOut)
			}
		})
	}
	// A flag of serve's that a command does not take is refused.
	if code, _, errOut := runWith(nil, "send", "-workers", "3", "-to", "o", "x"); code != 2 || !strings.Contains(errOut, "flag provided but not defined: -workers") {
		t.Errorf("send -workers: exit %d, %q", code, errOut)
	}
}

// The environment's problems with a flag a command takes stop it (exit
// 2, one line); those with flags it does not take are not its business.
func TestCommandEnvProblems(t *testing.T) {
	dir := t.TempDir()
	keyFile := writeFile(t, dir, "key", "k\n")
	tests := []struct {
		name, cmd string
		env       map[string]string
		args      []string
		wantCode  int
		wantErr   string
	}{
		{"send: API key twice", "send", map[string]string{"WXREPLY_API_KEY": "s3cret", "WXREPLY_API_KEY_FILE": keyFile},
			[]string{"-to", "o", "x"}, 2, "WXREPLY_API_KEY and WXREPLY_API_KEY_FILE are both set"},
		{"replay: AES key file missing", "replay", map[string]string{"WECHAT_ENCODING_AES_KEY_FILE": filepath.Join(dir, "none")},
			[]string{"a.xml"}, 2, "WECHAT_ENCODING_AES_KEY_FILE: cannot read"},
		// WXREPLY_WORKERS is serve's: send does not read it. The send
		// fails for want of a server, after the check.
		{"send: another command's variable", "send", map[string]string{"WXREPLY_WORKERS": "eight", "WXREPLY_API_KEY": "k"},
			[]string{"-server", closedServer(t), "-to", "o", "x"}, 1, "cannot reach"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runWith(tt.env, append([]string{tt.cmd}, tt.args...)...)
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			if code != tt.wantCode || len(lines) != 1 || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want %d and one line saying %q", code, errOut, tt.wantCode, tt.wantErr)
			}
			if strings.Contains(errOut, "s3cret") {
				t.Errorf("stderr repeats a secret: %q", errOut)
			}
		})
	}
}

// closedServer is the URL of a port nothing listens on.
func closedServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	return srv.URL
}
