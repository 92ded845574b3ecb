package test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// The tests in this file run the real wxreply binary, built once.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func wxreplyBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "wxreply-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "wxreply")
		out, err := exec.Command("go", "build", "-o", binPath, "..").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// runWxreply runs the binary to completion with env and returns its exit
// code and stderr.
func runWxreply(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(wxreplyBinary(t), args...)
	cmd.Env = env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), stdout.String(), stderr.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, stdout.String(), stderr.String()
}

func TestBadConfigurationStopsStartup(t *testing.T) {
	rulesFile, _ := filepath.Abs(filepath.Join("testdata", "rules.yaml"))
	base := []string{"PATH=" + os.Getenv("PATH"), "WXREPLY_ADDR=127.0.0.1:0", "WXREPLY_RULES=" + rulesFile}
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"missing token", nil, "WECHAT_TOKEN"},
		{"short AES key", []string{"WECHAT_TOKEN=" + testToken, "WECHAT_APPID=wx1", "WECHAT_ENCODING_AES_KEY=tooshort"}, "43 characters"},
		{"AES key not base64", []string{"WECHAT_TOKEN=" + testToken, "WECHAT_APPID=wx1", "WECHAT_ENCODING_AES_KEY=" + strings.Repeat("!", 43)}, "base64"},
		{"AES key without AppID", []string{"WECHAT_TOKEN=" + testToken, "WECHAT_ENCODING_AES_KEY=" + testAESKey}, "WECHAT_APPID"},
		{"unreadable rules", []string{"WECHAT_TOKEN=" + testToken, "WXREPLY_RULES=/nonexistent/rules.yaml"}, "/nonexistent/rules.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runWxreply(t, append(append([]string{}, base...), tt.env...), "serve")
			if code == 0 {
				t.Fatal("started with bad configuration")
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tt.want) {
				t.Fatalf("stderr %q, want one line naming %q", stderr, tt.want)
			}
			if strings.Contains(stderr, testAESKey) || strings.Contains(stderr, strings.Repeat("!", 43)) {
				t.Fatal("the error repeats the key")
			}
		})
	}
}

func TestCheckCommand(t *testing.T) {
	env := []string{"PATH=" + os.Getenv("PATH")}
	if code, out, _ := runWxreply(t, env, "check", filepath.Join("..", "rules.yaml")); code != 0 {
		t.Fatalf("check of the sample rules.yaml exited %d:\n%s", code, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("rules:\n  - name: a\n    match: {text: {regex: '('}}\n    reply: [{text: x}]\n  - name: a\n    reply: [{nosuch: x}]\n"), 0o644)
	code, out, _ := runWxreply(t, env, "check", bad)
	if code != 1 {
		t.Fatalf("check of a bad file exited %d, want 1", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 3 {
		t.Fatalf("want every problem reported, got:\n%s", out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, bad+":") || strings.Count(l, ":") < 3 {
			t.Errorf("line %q is not FILE:LINE:COL: message", l)
		}
	}
}

// TestSIGTERMLeavesTheRestForTheNextStart runs the real binary on a
// store directory, sends it callbacks from six users while WeChat holds
// the first reply of each, then SIGTERM: the six calls under way finish
// and are delivered, the process exits 0 at once without failing
// anything, and what was not under way stays in the store. The next start
// on the same directory delivers the rest: every reply acknowledged,
// exactly once, in order per user.
func TestSIGTERMLeavesTheRestForTheNextStart(t *testing.T) {
	const users, perUser = 6, 10
	// The first call of each user waits for release; a call after those
	// (claimed while the shutdown began) is answered 503, so that it is
	// parked for a retry, not delivered: what this process delivers is
	// exactly the calls under way at SIGTERM.
	api := wechattest.New(wechattest.WithCredentials(testAppID, testAppSecret))
	release := make(chan struct{})
	var calls, held atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == wechat.PathCustomSend {
			if calls.Add(1) > users {
				http.Error(w, "shutting down", http.StatusServiceUnavailable)
				return
			}
			held.Add(1)
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		api.ServeHTTP(w, r)
	}))
	defer front.Close()
	let := sync.OnceFunc(func() { close(release) })
	defer let() // unblocks a failed test's held calls first

	dir := t.TempDir()
	env := []string{
		"WECHAT_TOKEN=" + testToken, "WECHAT_APPID=" + testAppID, "WECHAT_APPSECRET=" + testAppSecret,
		"WECHAT_API_BASE=" + front.URL, rulesEnv(t), "WXREPLY_STORE=" + dir, "WXREPLY_SHUTDOWN_TIMEOUT=20s",
	}
	p := startWxreply(t, env, "serve")
	order := func(u, i int) int { return 5_000_000 + u*perUser + i } // the order-status rule answers it
	for i := 0; i < perUser; i++ {
		for u := 0; u < users; u++ {
			n := order(u, i)
			if code, body := postCallback(t, p.base, text(fmt.Sprintf("oTERM_user_%02d", u), fmt.Sprintf("订单 %d", n), int64(n))); code != 200 {
				t.Fatalf("callback %d answered %d %q", n, code, body)
			}
		}
	}
	waitFor(t, 10*time.Second, func() bool { return held.Load() == users },
		func() string { return fmt.Sprintf("%d calls at WeChat, want one per user (%d)", held.Load(), users) })
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "shutting down")
	// The listener is closed before the outbox stops claiming: wait for
	// that, then let the calls under way finish.
	waitFor(t, 10*time.Second, func() bool {
		resp, err := http.Get(p.base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err != nil
	}, func() string { return "the server still accepts connections after SIGTERM" })
	let()
	if code := p.wait(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, p.logs.String())
	}
	if len(p.logs.lines("shutdown complete")) != 1 {
		t.Errorf("no shutdown line in the logs:\n%s", p.logs.String())
	}
	if l := p.logs.lines("message failed"); len(l) > 0 {
		t.Errorf("SIGTERM failed a message: %s", l[0])
	}
	first := deliveredBy(api)
	if len(first) != users {
		t.Fatalf("%d replies delivered before exit, want the %d under way", len(first), users)
	}

	// The next start on the same store sends the rest.
	api2 := wechattest.NewServer(wechattest.WithCredentials(testAppID, testAppSecret))
	defer api2.Close()
	env[3] = "WECHAT_API_BASE=" + api2.URL
	p2 := startWxreply(t, env, "serve")
	waitFor(t, 20*time.Second, func() bool { return len(deliveredBy(api2)) >= users*perUser-users },
		func() string {
			return fmt.Sprintf("%d of the %d replies left delivered after the restart", len(deliveredBy(api2)), users*perUser-users)
		})
	if code := p2.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("second run: exit %d:\n%s", code, p2.logs.String())
	}
	byUser := map[string][]string{}
	for _, r := range append(first, deliveredBy(api2)...) {
		byUser[r.OpenID] = append(byUser[r.OpenID], r.Custom.Text.Content)
	}
	for u := 0; u < users; u++ {
		var want []string
		for i := 0; i < perUser; i++ {
			want = append(want, fmt.Sprintf("订单 %d 正在处理", order(u, i)))
		}
		openid := fmt.Sprintf("oTERM_user_%02d", u)
		if got := byUser[openid]; strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s got\n%q\nwant each reply once, in order:\n%q", openid, got, want)
		}
	}
}

// TestStoreDirectoryInUse: a second serve on the store directory of a
// running one stops at once with exit 2, saying the directory is in use,
// and the first goes on serving.
func TestStoreDirectoryInUse(t *testing.T) {
	dir := t.TempDir()
	env := []string{"WECHAT_TOKEN=" + testToken, rulesEnv(t), "WXREPLY_STORE=" + dir}
	p := startWxreply(t, env, "serve")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	code, _, stderr := runWxreply(t, append([]string{"PATH=" + os.Getenv("PATH"), "WXREPLY_ADDR=" + addr, "WXREPLY_LOG_LEVEL=error"}, env...), "serve")
	if code != 2 {
		t.Fatalf("a second serve on the same store exited %d, want 2:\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "in use") || !strings.Contains(lines[0], dir) {
		t.Errorf("stderr %q, want one line saying %s is in use", stderr, dir)
	}
	if code, body := postCallback(t, p.base, text("oLOCK_user_0001", "hi", 7_100_001)); code != 200 {
		t.Errorf("the first server answered %d %q after the second tried its store", code, body)
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.logs.String())
	}
	// Once the first has exited the directory is free again.
	p = startWxreply(t, env, "serve")
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("a serve after the first exited: exit %d:\n%s", code, p.logs.String())
	}
}

// TestQueueSizeIgnored: WXREPLY_QUEUE_SIZE is no longer a bound (the
// store is); setting it logs a warning and serve goes on, refusing
// nothing past it.
func TestQueueSizeIgnored(t *testing.T) {
	api := wechattest.NewServer(wechattest.WithCredentials(testAppID, testAppSecret))
	defer api.Close()
	release := api.Hold(wechat.PathCustomSend)
	defer release()
	p := startWxreply(t, []string{
		"WECHAT_TOKEN=" + testToken, "WECHAT_APPID=" + testAppID, "WECHAT_APPSECRET=" + testAppSecret,
		"WECHAT_API_BASE=" + api.URL, rulesEnv(t), "WXREPLY_QUEUE_SIZE=5",
	}, "serve")
	p.waitLog(t, `"level":"WARN"`, "WXREPLY_QUEUE_SIZE is ignored")
	// Twenty replies for one user, with WeChat holding the first: far
	// more than a queue of five.
	const n = 20
	for i := 0; i < n; i++ {
		if code, body := postCallback(t, p.base, text("oQUEUE_user_0001", "hi", int64(7_200_000+i))); code != 200 {
			t.Fatalf("callback %d answered %d %q: refused past WXREPLY_QUEUE_SIZE", i, code, body)
		}
	}
	release()
	waitFor(t, 10*time.Second, func() bool { return len(api.Accepted(wechat.PathCustomSend)) >= n },
		func() string {
			return fmt.Sprintf("%d of %d replies delivered", len(api.Accepted(wechat.PathCustomSend)), n)
		})
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.logs.String())
	}
}

func waitHealthy(t *testing.T, base string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the server at %s did not become healthy", base)
}
