package test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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
		{"short AES key", []string{"WECHAT_TOKEN=t", "WECHAT_APPID=wx1", "WECHAT_ENCODING_AES_KEY=tooshort"}, "43 characters"},
		{"AES key not base64", []string{"WECHAT_TOKEN=t", "WECHAT_APPID=wx1", "WECHAT_ENCODING_AES_KEY=" + strings.Repeat("!", 43)}, "base64"},
		{"AES key without AppID", []string{"WECHAT_TOKEN=t", "WECHAT_ENCODING_AES_KEY=" + testAESKey}, "WECHAT_APPID"},
		{"unreadable rules", []string{"WECHAT_TOKEN=t", "WXREPLY_RULES=/nonexistent/rules.yaml"}, "/nonexistent/rules.yaml"},
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

// TestSIGTERMLosesNothing runs the real binary against the fake API, sends
// it callbacks while the API is slow, then SIGTERM: every callback it
// answered must have its reply delivered before it exits 0.
func TestSIGTERMLosesNothing(t *testing.T) {
	api := wechattest.NewServer(wechattest.WithCredentials(testAppID, testAppSecret))
	defer api.Close()
	api.SetLatency(wechat.PathCustomSend, 30*time.Millisecond)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rulesFile, _ := filepath.Abs(filepath.Join("testdata", "rules.yaml"))
	cmd := exec.Command(wxreplyBinary(t), "serve")
	cmd.Env = []string{
		"WECHAT_TOKEN=" + testToken, "WECHAT_APPID=" + testAppID, "WECHAT_APPSECRET=" + testAppSecret,
		"WECHAT_API_BASE=" + api.URL, "WXREPLY_ADDR=" + addr, "WXREPLY_RULES=" + rulesFile,
		"WXREPLY_SHUTDOWN_TIMEOUT=20s",
	}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var logs syncBuffer
	logsDone := make(chan struct{})
	go func() {
		defer close(logsDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
		}
	}()
	base := "http://" + addr
	waitHealthy(t, base)

	acked := 0
	for i := 0; i < 60; i++ {
		code, _ := postCallback(t, base, text(fmt.Sprintf("oTERM_user_%02d", i%6), "hi", int64(5_000_000+i)))
		if code == 200 {
			acked++
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-logsDone // before Wait, which closes the pipe under the reader
	err = cmd.Wait()
	if err != nil {
		t.Fatalf("wxreply exited with %v after SIGTERM:\n%s", err, logs.String())
	}
	delivered := 0
	for _, r := range api.Received() {
		if r.API == wechat.PathCustomSend && r.OK() {
			delivered++
		}
	}
	if acked != 60 || delivered != acked {
		t.Fatalf("%d callbacks acknowledged, %d replies delivered before exit", acked, delivered)
	}
	if len(logs.lines("shutdown complete")) != 1 {
		t.Errorf("no shutdown line in the logs:\n%s", logs.String())
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
	t.Fatal("wxreply did not become healthy")
}
