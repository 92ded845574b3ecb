package test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// process is a running wxreply binary and its stderr.
type process struct {
	cmd  *exec.Cmd
	base string // http://127.0.0.1:PORT
	logs *syncBuffer
	done chan struct{} // closed when stderr is drained
}

// startWxreply starts the binary with env (plus PATH, a free
// WXREPLY_ADDR and, unless env names one, a fresh store directory) and
// waits until it is healthy.
func startWxreply(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	// The default store is ./data, in the test's directory: a store of
	// its own instead. Made before the Kill cleanup below, so removed
	// after it. A WXREPLY_STORE in env comes later and wins.
	store := t.TempDir()
	cmd := exec.Command(wxreplyBinary(t), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "WXREPLY_ADDR=" + addr, "WXREPLY_STORE=" + store}, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, base: "http://" + addr, logs: &syncBuffer{}, done: make(chan struct{})}
	t.Cleanup(func() { cmd.Process.Kill(); <-p.done })
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.logs.Write(append(sc.Bytes(), '\n'))
		}
	}()
	waitHealthy(t, p.base)
	return p
}

// stop sends sig and returns the exit code (-1 when a signal ended it).
func (p *process) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return p.wait(t)
}

func (p *process) wait(t *testing.T) int {
	t.Helper()
	// Drain stderr before Wait: Wait closes the pipe, and lines the
	// process wrote just before it exited would be lost.
	<-p.done
	err := p.cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

// waitLog waits until a log line holds every one of subs.
func (p *process) waitLog(t *testing.T, subs ...string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if len(p.logs.lines(subs...)) > 0 {
			return
		}
	}
	t.Fatalf("no log line with %q:\n%s", subs, p.logs.String())
}

func rulesEnv(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join("testdata", "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return "WXREPLY_RULES=" + abs
}

// TestNoArgumentsServes: `wxreply` alone is `wxreply serve`, SIGHUP
// reloads the rules without ending the process, and SIGINT ends it
// cleanly with exit 0.
func TestNoArgumentsServes(t *testing.T) {
	p := startWxreply(t, []string{"WECHAT_TOKEN=" + testToken, rulesEnv(t)})
	code, body := postCallback(t, p.base, capture(t, "plain", "event_click.xml"))
	if code != 200 {
		t.Fatalf("callback answered %d %q", code, body)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "SIGHUP: reloading rules")
	p.waitLog(t, "rules unchanged")
	waitHealthy(t, p.base)
	if code := p.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit %d after SIGINT, want 0:\n%s", code, p.logs.String())
	}
	if len(p.logs.lines("shutdown complete")) != 1 {
		t.Errorf("no shutdown line:\n%s", p.logs.String())
	}
}

// TestSecondSignalForcesExit: while a shutdown waits for a reply under
// way at a slow API, a second SIGTERM ends the process at once.
func TestSecondSignalForcesExit(t *testing.T) {
	api := wechattest.NewServer(wechattest.WithCredentials(testAppID, testAppSecret))
	defer api.Close()
	release := api.Hold(wechat.PathCustomSend)
	defer release()
	p := startWxreply(t, []string{
		"WECHAT_TOKEN=" + testToken, "WECHAT_APPID=" + testAppID, "WECHAT_APPSECRET=" + testAppSecret,
		"WECHAT_API_BASE=" + api.URL, rulesEnv(t), "WXREPLY_SHUTDOWN_TIMEOUT=1m",
	}, "serve")
	if code, _ := postCallback(t, p.base, text("oSIG_user_0001", "hi", 7_000_001)); code != 200 {
		t.Fatalf("callback answered %d", code)
	}
	// The shutdown waits only for calls under way: wait until the reply
	// is one.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := api.WaitPending(ctx, 1); err != nil {
		t.Fatal("the reply never reached the fake API")
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "signal received")
	if code := p.stop(t, syscall.SIGTERM); code == 0 {
		t.Fatalf("a forced exit reported success:\n%s", p.logs.String())
	}
}

// TestProcessLogsNoSecrets runs the binary with every secret set, at
// debug level, through URL verification (fresh and stale), encrypted
// callbacks, a refused plaintext one, bad signatures, the push API with a
// wrong and a right key, a revoked access token, SIGHUP and SIGTERM, and
// checks no secret reached its output.
func TestProcessLogsNoSecrets(t *testing.T) {
	const apiKey = "push-api-key-must-never-be-logged"
	api := wechattest.NewServer(wechattest.WithCredentials(testAppID, testAppSecret))
	defer api.Close()
	p := startWxreply(t, []string{
		"WECHAT_TOKEN=" + testToken, "WECHAT_APPID=" + testAppID, "WECHAT_APPSECRET=" + testAppSecret,
		"WECHAT_ENCODING_AES_KEY=" + testAESKey, "WXREPLY_API_KEY=" + apiKey,
		"WECHAT_API_BASE=" + api.URL, rulesEnv(t), "WXREPLY_LOG_LEVEL=debug",
	}, "serve")
	client := wechat.NewClient(wechat.ClientOptions{BaseURL: api.URL, AppID: testAppID, AppSecret: testAppSecret,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	var tokens []string
	token := func() {
		tok, err := client.Token(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
	}

	// The account has a key: its callbacks come encrypted, and a
	// plaintext one is refused (and logged).
	cipher, err := wechat.NewCipher(testAESKey, testAppID)
	if err != nil {
		t.Fatal(err)
	}
	sealed := func(msg []byte) []byte {
		enc, err := cipher.Encrypt(msg)
		if err != nil {
			t.Fatal(err)
		}
		return wechat.SafeModeBody("gh_test0000001", enc)
	}
	now := strconv.FormatInt(time.Now().Unix(), 10)
	verify := url.Values{"signature": {wechat.Signature(testToken, now, "2")}, "timestamp": {now}, "nonce": {"2"}, "echostr": {"e"}}
	stale := url.Values{"signature": {wechat.Signature(testToken, "1", "2")}, "timestamp": {"1"}, "nonce": {"2"}, "echostr": {"e"}}
	for _, q := range []string{verify.Encode(), stale.Encode(), "signature=bad&timestamp=1&nonce=2&echostr=e"} {
		get(t, p.base+"/wechat?"+q)
	}
	postCallback(t, p.base, sealed(text("oSECRET_user_1", "hi", 8_000_001)))
	postCallback(t, p.base, text("oSECRET_user_1", "hi", 8_000_003)) // plaintext: refused
	postCallback(t, p.base, capture(t, "safe", "text.xml"))
	postCallback(t, p.base, capture(t, "compat", "event_subscribe.xml"))
	post(t, p.base+"/wechat?signature=bad&timestamp=1&nonce=2&encrypt_type=aes&msg_signature=bad", "", "<xml/>")
	if err := api.WaitReceived(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	token()
	api.InvalidateTokens()
	postCallback(t, p.base, sealed(text("oSECRET_user_1", "hello", 8_000_002)))
	msg := `{"touser":"oSECRET_user_1","msgtype":"text","text":{"content":"pushed"}}`
	post(t, p.base+"/api/v1/messages", "Bearer wrong-"+apiKey, msg)
	post(t, p.base+"/api/v1/messages", "Bearer "+apiKey, msg)
	if err := api.WaitReceived(context.Background(), 4); err != nil {
		t.Fatal(err)
	}
	token()
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "SIGHUP: reloading rules")
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.logs.String())
	}

	logs := p.logs.String()
	if len(p.logs.lines("http request"))+len(p.logs.lines(`"msg":"callback"`)) < 8 || len(p.logs.lines("message delivered")) == 0 {
		t.Fatalf("the run did not log what it should have; the check below would prove nothing:\n%s", logs)
	}
	secrets := map[string]string{"Token": testToken, "EncodingAESKey": testAESKey, "AppSecret": testAppSecret, "API key": apiKey}
	for i, tok := range tokens {
		secrets["access token "+string(rune('1'+i))] = tok
	}
	for name, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the %s appears in the logs", name)
		}
	}
}

func get(t *testing.T, u string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func post(t *testing.T, u, auth, body string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}
