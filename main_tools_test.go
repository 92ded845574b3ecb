package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/handlers"
	"github.com/wxreply/wxreply/server"
	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// env is a getenv over a map.
func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// The README's first command: the sandbox with the repository's
// rules.yaml, through the real wiring, every command once.
func TestSandboxWithSampleRules(t *testing.T) {
	steps := []struct{ in, want string }{
		{"hi", "< 你好！\n"},
		{"/subscribe", "< 欢迎关注！\n< [image] media_id FAKEMEDIA_"},
		{"/subscribe spring", "< 欢迎参加春季活动！\n"},
		{"/scan spring", "< 欢迎参加春季活动！\n"},
		{"评价", "< 您对本次服务是否满意呢？\n    1. 满意\n    2. 不满意\n  欢迎再次光临\n  (type a number to choose)\n"},
		{"1", "< 感谢您的好评！\n"},
		{"/menu 101", "< 感谢您的好评！\n"},
		{"/click V1001_TODAY_MUSIC", "< "},
		{"/menu", "  1. 今日歌曲  (click V1001_TODAY_MUSIC)\n  2. 示例 ▸\n"},
		{"/tap 1", "[tapped 今日歌曲]\n< "},
		{"/tap 3.1", "[tapped 官网]\n(no reply)\n"},
		{"/voice 你好", "< 你好！\n"},
		{"营业时间", "< 每天 9:00–21:00 营业\n"},
		{"帮助", "  查看帮助中心 <https://example.com/help>\n"},
		{"/unsubscribe", "(no reply)\n"},
		{"/rules on", "[showing which rule answers each message]\n"},
		{"hello", "[rule: greeting]\n< 你好！\n"},
		{"听不懂的话", "[rule: default]\n< 没听懂"},
		{"/subscribe", "[rule: welcome]\n< 欢迎关注！\n"},
		{"/unsubscribe", "[no rule matched]\n(no reply)\n"},
		{"/rules off", "[not showing which rule answers]\n"},
		{"hi", "< 你好！\n"},
		{"/help", "/rules on|off"},
		{"/quit", ""},
	}
	var in strings.Builder
	for _, s := range steps {
		in.WriteString(s.in + "\n")
	}
	var out, errOut strings.Builder
	code := run([]string{"sandbox"}, env(nil), strings.NewReader(in.String()), &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, &errOut, &out)
	}
	// Split the transcript at the echoed lines and check each answer.
	transcript := out.String()
	for i, s := range steps {
		start := strings.Index(transcript, "> "+s.in+"\n")
		if start < 0 {
			t.Fatalf("%q not in the transcript:\n%s", s.in, out.String())
		}
		transcript = transcript[start+len("> "+s.in+"\n"):]
		answer := transcript
		if i+1 < len(steps) {
			answer = transcript[:strings.Index(transcript, "> "+steps[i+1].in+"\n")]
		}
		if !strings.Contains(answer, s.want) || (s.want == "" && answer != "") {
			t.Errorf("after %q the terminal showed:\n%s\nwant it to contain:\n%s", s.in, answer, s.want)
		}
	}
	if _, after, _ := strings.Cut(out.String(), "> /rules off\n"); strings.Contains(after, "[rule") {
		t.Errorf("after /rules off the terminal still says which rule answered:\n%s", after)
	}
	if errOut.Len() != 0 {
		t.Errorf("stderr: %s", &errOut)
	}
}

// -show-rule says which rule answered from the first line, at any
// -log-level: the rules' decisions are read from the server's log.
func TestSandboxShowRule(t *testing.T) {
	var out, errOut strings.Builder
	code := run([]string{"sandbox", "-show-rule", "-log-level", "error"}, env(nil), strings.NewReader("hi\n/unsubscribe\n"), &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, &errOut)
	}
	want := "> hi\n[rule: greeting]\n< 你好！\n> /unsubscribe\n[no rule matched]\n(no reply)\n"
	if !strings.HasSuffix(out.String(), want) {
		t.Errorf("the terminal showed:\n%s\nwant it to end with:\n%s", &out, want)
	}
}

func TestSandboxBadRules(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(bad, []byte("rules:\n  - name: x\n    mach: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "wxreply.log")
	var out, errOut strings.Builder
	code := run([]string{"sandbox", "-rules", bad, "-log", logFile}, env(nil), strings.NewReader("hi\n"), &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "the server did not start") || !strings.Contains(errOut.String(), bad+":3:") {
		t.Errorf("exit %d, stderr %q: want 1 and the problem's position", code, errOut.String())
	}
	if code := run([]string{"sandbox", "extra"}, env(nil), strings.NewReader(""), &out, &errOut); code != 2 {
		t.Errorf("an argument: exit %d, want 2", code)
	}
}

// syncBuffer is an io.Writer a test can read while the sandbox writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Edits to the rules file apply while the sandbox runs.
func TestSandboxLiveEdit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yaml")
	write := func(reply string) {
		rules := "rules:\n  - name: greeting\n    match:\n      text:\n        equals: [hi]\n    reply:\n      - text: \"" + reply + "\"\n"
		if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("first version")
	inR, inW := io.Pipe()
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run([]string{"sandbox", "-rules", path}, env(nil), inR, out, io.Discard) }()
	say := func(want string) bool {
		before := len(out.String())
		if _, err := io.WriteString(inW, "hi\n"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			got := out.String()[before:]
			if strings.Contains(got, "< ") && strings.HasSuffix(got, "\n") {
				return strings.Contains(got, "< "+want+"\n")
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("no answer to hi:\n%s", out.String())
		return false
	}
	// waitFor waits until the terminal shows want after the first from
	// bytes, and returns where it ends.
	waitFor := func(from int, want string) int {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if i := strings.Index(out.String()[from:], want); i >= 0 {
				return from + i + len(want)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("the terminal never showed %q:\n%s", want, out.String()[from:])
		return 0
	}
	if !say("first version") {
		t.Fatalf("before the edit:\n%s", out.String())
	}
	// An edit that applies says so, and the next line gets the new rules.
	mark := len(out.String())
	write("second version")
	waitFor(mark, "[rules reloaded: 1 rule]\n")
	if !say("second version") {
		t.Fatalf("after the edit:\n%s", out.String())
	}
	// A refused edit shows every problem, FILE:LINE:COL: message, and the
	// rules in force stay.
	mark = len(out.String())
	if err := os.WriteFile(path, []byte("rules:\n  - name: greeting\n    mach: {}\n    reply: [{text: x}]\n  - name: greeting\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	end := waitFor(mark, "[rules not reloaded, ")
	waitFor(end, "\n"+path+":3:5: ")
	waitFor(end, "\n"+path+":5:")
	if !say("second version") {
		t.Fatalf("after a refused edit:\n%s", out.String())
	}
	inW.Close()
	if code := <-done; code != 0 {
		t.Errorf("exit %d after EOF", code)
	}
}

// startApp runs the real server (server.New with the configuration's
// server(log), and Run, as serve does) with the push API on, against the
// fake WeChat API, and returns its base URL. edits change the
// configuration first.
func startApp(t *testing.T, apiKey string, edits ...func(*config)) (string, *wechattest.Server) {
	t.Helper()
	fake := wechattest.NewServer()
	t.Cleanup(fake.Close)
	c := &config{
		token: "tok", appID: fake.AppID, appSecret: fake.AppSecret, apiBase: fake.URL,
		rulesPath: "rules.yaml", apiKey: apiKey, shutdownTimeout: 5 * time.Second, store: "memory",
	}
	for _, edit := range edits {
		edit(c)
	}
	return startServer(t, c), fake
}

// startServer runs the server c configures on a loopback port until the
// test ends, and returns its base URL.
func startServer(t *testing.T, c *config) string {
	t.Helper()
	srv, err := server.New(c.server(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, ln, nil) }()
	t.Cleanup(func() {
		// A connection the client's pool dialled and never used is new
		// to the server, which Shutdown waits on for 5 s: close them.
		http.DefaultClient.CloseIdleConnections()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server shutdown: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func TestSendCommand(t *testing.T) {
	base, fake := startApp(t, "push-key")
	dir := t.TempDir()
	msgFile := filepath.Join(dir, "card.json")
	card := `{"touser":"oJSON","msgtype":"news","news":{"articles":[{"title":"T","url":"https://example.com"}]}}`
	if err := os.WriteFile(msgFile, []byte(card), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantCode  int
		wantOut   string
		wantErr   string
		wantFakeN int // messages the fake API has accepted after this step
	}{
		{"text, waiting", []string{"-server", base, "-to", "oCLI", "-wait", "订单", "已发货"}, map[string]string{"WXREPLY_API_KEY": "push-key"}, 0, "delivered\n", "", 1},
		{"json file", []string{"-server", base, "-json", msgFile, "-wait", "-api-key", "push-key"}, nil, 0, "delivered\n", "", 2},
		{"idempotent", []string{"-server", base, "-to", "oCLI", "-idempotency-key", "k1", "-wait", "once"}, map[string]string{"WXREPLY_API_KEY": "push-key"}, 0, "delivered\n", "", 3},
		{"idempotent retry", []string{"-server", base, "-to", "oCLI", "-idempotency-key", "k1", "-wait", "once"}, map[string]string{"WXREPLY_API_KEY": "push-key"}, 0, "delivered\n", "", 3},
		{"wrong key", []string{"-server", base, "-to", "oCLI", "x"}, map[string]string{"WXREPLY_API_KEY": "nope"}, 1, "", "401 Unauthorized", 3},
		{"invalid", []string{"-server", base, "-to", "oCLI", "   "}, map[string]string{"WXREPLY_API_KEY": "push-key"}, 1, "", "nothing to send", 3},
		{"missing file", []string{"-server", base, "-json", filepath.Join(dir, "none.json")}, map[string]string{"WXREPLY_API_KEY": "push-key"}, 2, "", "no such file", 3},
		{"bad flag", []string{"-nope"}, nil, 2, "", "flag provided but not defined", 3},
		// The -json file names its user: a -to or a TEXT beside it is a
		// mistake, not something to ignore.
		{"-to with -json", []string{"-server", base, "-to", "oOther", "-json", msgFile}, map[string]string{"WXREPLY_API_KEY": "push-key"}, 2, "",
			"wxreply send: -to and -json do not go together: the -json file names the user (touser)\n", 3},
		{"TEXT with -json", []string{"-server", base, "-json", msgFile, "hello"}, map[string]string{"WXREPLY_API_KEY": "push-key"}, 2, "",
			"wxreply send: give a TEXT or -json FILE, not both\n", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(append([]string{"send"}, tt.args...), env(tt.env), strings.NewReader(""), &out, &errOut)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d: %s", code, tt.wantCode, &errOut)
			}
			if !strings.HasSuffix(out.String(), tt.wantOut) || !strings.Contains(errOut.String(), tt.wantErr) {
				t.Errorf("stdout %q stderr %q: want %q and %q", &out, &errOut, tt.wantOut, tt.wantErr)
			}
			if strings.HasSuffix(tt.wantErr, "\n") && errOut.String() != tt.wantErr {
				t.Errorf("stderr %q, want exactly the line %q", &errOut, tt.wantErr)
			}
			if n := len(fake.Accepted(wechat.PathCustomSend)); n != tt.wantFakeN {
				t.Errorf("fake API accepted %d messages, want %d", n, tt.wantFakeN)
			}
		})
	}
	got := fake.Accepted(wechat.PathCustomSend)
	if len(got) == 3 && (got[0].Custom.Text == nil || got[0].Custom.Text.Content != "订单 已发货" || got[1].OpenID != "oJSON") {
		t.Errorf("fake API got %+v and %+v", got[0].Custom, got[1].Custom)
	}
}

// send -wait says why a message failed as the server's log does: the
// "connection refused" behind a network error, not the network error
// alone.
func TestSendWaitSaysWhy(t *testing.T) {
	down := closedServer(t)
	base, _ := startApp(t, "push-key", func(c *config) {
		c.apiBase = down                       // WeChat cannot be reached
		c.maxRetryAge = 100 * time.Millisecond // and the first retry would come too late
	})
	var out, errOut strings.Builder
	code := run([]string{"send", "-server", base, "-to", "oCLI", "-wait", "-timeout", "20s", "hi"}, env(map[string]string{"WXREPLY_API_KEY": "push-key"}),
		strings.NewReader(""), &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s%s", code, &out, &errOut)
	}
	for _, w := range []string{"failed: network error: connection refused", "message not delivered: network error: connection refused"} {
		if !strings.Contains(out.String()+errOut.String(), w) {
			t.Errorf("stdout %q, stderr %q: want %q", &out, &errOut, w)
		}
	}
}

func TestReplayCommand(t *testing.T) {
	srv := httptest.NewServer(handlers.New(handlers.Config{
		Token:     "wxreplytoken",
		Responder: nopResponder{},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}))
	defer srv.Close()
	text := filepath.Join("test", "testdata", "plain", "text.xml")
	click := filepath.Join("test", "testdata", "plain", "event_click.xml")
	keyEnv := map[string]string{"WECHAT_TOKEN": "wxreplytoken"}
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"two files", []string{"-url", srv.URL + "/wechat", text, click}, keyEnv, 0, click + ": 200 OK", ""},
		{"token by flag", []string{"-url", srv.URL + "/wechat", "-token", "wxreplytoken", text}, nil, 0, text + ": 200 OK", ""},
		{"wrong token", []string{"-url", srv.URL + "/wechat", "-token", "bad", text}, nil, 1, text + ": 403 Forbidden", "1 of 1 files failed"},
		{"no token", []string{"-url", srv.URL + "/wechat", text}, nil, 1, "", "WECHAT_TOKEN"},
		{"no files", []string{"-url", srv.URL + "/wechat"}, keyEnv, 2, "", "usage: wxreply replay"},
		{"unreadable file", []string{"-url", srv.URL + "/wechat", "nope.xml"}, keyEnv, 1, "", "nope.xml: open nope.xml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := run(append([]string{"replay"}, tt.args...), env(tt.env), strings.NewReader(""), &out, &errOut)
			if code != tt.wantCode || !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(errOut.String(), tt.wantErr) {
				t.Errorf("exit %d stdout %q stderr %q; want %d, %q, %q", code, &out, &errOut, tt.wantCode, tt.wantOut, tt.wantErr)
			}
		})
	}
}

type nopResponder struct{}

func (nopResponder) Respond(context.Context, *wechat.Message) ([]byte, error) { return nil, nil }

func TestLocalURL(t *testing.T) {
	for addr, want := range map[string]string{
		":8080":          "http://127.0.0.1:8080",
		"0.0.0.0:9000":   "http://127.0.0.1:9000",
		"[::]:9000":      "http://127.0.0.1:9000",
		"10.0.0.5:80":    "http://10.0.0.5:80",
		"[::1]:8080":     "http://[::1]:8080",
		"not an address": "http://127.0.0.1:8080",
	} {
		if got := localURL(addr); got != want {
			t.Errorf("localURL(%q) = %q, want %q", addr, got, want)
		}
	}
}
