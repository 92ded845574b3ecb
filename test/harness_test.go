// Package test is wxreply's end-to-end suite: captured XML is signed (and
// encrypted) as WeChat would, posted to the real server — built by
// server.New, the wiring serve runs, with its store, outbox, metrics,
// health and push routes — matched against real rules and delivered
// through the real outbox to a fake WeChat API that checks what it
// receives.
package test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/server"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// The test account of the captures (test/testdata/keys.txt).
const (
	testToken     = "wxreplytoken"
	testAppID     = "wxtest0000000001"
	testAESKey    = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	testAppSecret = "e2e-app-secret-must-never-be-logged"
	testAPIKey    = "e2e-push-api-key-must-never-be-logged"
)

// harness is one running wxreply: server.New's wiring served by
// (*server.Server).Run on a loopback listener, talking to a fake WeChat
// API.
type harness struct {
	api    *wechattest.Server
	srv    *server.Server
	url    string // http://127.0.0.1:PORT
	cipher *wechat.Cipher
	logs   *syncBuffer
	reload chan os.Signal // SIGHUP, as serve passes it

	stopOnce sync.Once
	runErr   error
	done     chan struct{} // closed when Run returned
	cancel   context.CancelFunc
}

type harnessOptions struct {
	rules string // rules file; default testdata/rules.yaml

	// store is WXREPLY_STORE: "" is memory; "dir" a fresh t.TempDir();
	// anything else is used as it is (a directory shared by two
	// harnesses one after the other, say).
	store string

	// api is the fake API to talk to; nil makes a new one.
	api *wechattest.Server

	// delivery adjusts the outbox after the harness's fast defaults.
	delivery func(*delivery.Options)

	// config adjusts the server's configuration last.
	config func(*server.Config)

	quiet bool // log warnings only, for load tests

	// safe configures the EncodingAESKey: the account in safe (or
	// compatible) mode, which takes encrypted callbacks only. Without it
	// the account is in plaintext mode.
	safe bool
}

func newHarness(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	if o.rules == "" {
		o.rules = filepath.Join("testdata", "rules.yaml")
	}
	switch o.store {
	case "":
		o.store = store.Memory
	case "dir":
		o.store = t.TempDir()
	}
	h := &harness{logs: &syncBuffer{}, reload: make(chan os.Signal, 1), done: make(chan struct{})}
	level := slog.LevelDebug
	if o.quiet {
		level = slog.LevelWarn
	}
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: level}))
	h.api = o.api
	if h.api == nil {
		h.api = wechattest.NewServer(wechattest.WithCredentials(testAppID, testAppSecret))
		t.Cleanup(h.api.Close) // after the server's shutdown: cleanups run last first
	}
	aesKey := ""
	if o.safe {
		aesKey = testAESKey
		cipher, err := wechat.NewCipher(testAESKey, testAppID)
		if err != nil {
			t.Fatal(err)
		}
		h.cipher = cipher
	}
	cfg := server.Config{
		Token: testToken, AppID: testAppID, AppSecret: testAppSecret, AESKey: aesKey,
		APIBase: h.api.URL, RulesPath: o.rules, APIKey: testAPIKey, Store: o.store,
		ShutdownTimeout: 10 * time.Second,
		Logger:          log,
		Delivery: func(d *delivery.Options) {
			d.BaseBackoff = 2 * time.Millisecond
			d.MaxBackoff = 50 * time.Millisecond
			d.PollEvery = 5 * time.Millisecond
			if o.delivery != nil {
				o.delivery(d)
			}
		},
	}
	if o.config != nil {
		o.config(&cfg)
	}
	var err error
	h.srv, err = server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.srv.Close()
		t.Fatal(err)
	}
	h.url = "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() {
		defer close(h.done)
		h.runErr = h.srv.Run(ctx, ln, h.reload)
	}()
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
	})
	return h
}

// stop shuts the server down as SIGTERM does and returns Run's error.
// Calling it again returns the same error.
func (h *harness) stop() error {
	h.stopOnce.Do(func() {
		h.cancel()
		<-h.done
	})
	return h.runErr
}

// outbox is the server's delivery engine.
func (h *harness) outbox() *delivery.Engine { return h.srv.Outbox() }

// capture reads a captured callback: mode is plain, safe or compat.
func capture(t testing.TB, mode, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", mode, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// post signs body as WeChat would and posts it to /wechat. Bodies with an
// <Encrypt> element go with encrypt_type=aes and msg_signature; to a safe
// harness, a plaintext body goes encrypted, as WeChat would send it.
func (h *harness) post(t testing.TB, body []byte) (int, string) {
	t.Helper()
	if h.cipher != nil && !bytes.Contains(body, []byte("<Encrypt>")) {
		enc, err := h.cipher.Encrypt(body)
		if err != nil {
			t.Fatal(err)
		}
		body = wechat.SafeModeBody("gh_test0000001", enc)
	}
	return postCallback(t, h.url, body)
}

// callbackNonce makes each signed request's nonce unique.
var callbackNonce atomic.Int64

// postCallback signs body as WeChat would and posts it to base's /wechat.
func postCallback(t testing.TB, base string, body []byte) (int, string) {
	t.Helper()
	m, err := wechat.ParseMessage(body)
	if err != nil {
		t.Fatalf("capture does not parse: %v", err)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	nonce := strconv.FormatInt(callbackNonce.Add(1), 10)
	q := wechat.CallbackQuery(testToken, ts, nonce, m.FromUserName, m.Encrypt)
	resp, err := http.Post(base+"/wechat?"+q.Encode(), "text/xml", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// do makes one request to the server with the push API's key and returns
// the status and body.
func (h *harness) do(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, h.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// text builds a plaintext text message from openid with a fresh MsgId.
func text(openid, content string, msgID int64) []byte {
	return []byte("<xml><ToUserName><![CDATA[gh_test0000001]]></ToUserName><FromUserName><![CDATA[" + openid +
		"]]></FromUserName><CreateTime>" + strconv.FormatInt(time.Now().Unix(), 10) +
		"</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[" + content +
		"]]></Content><MsgId>" + strconv.FormatInt(msgID, 10) + "</MsgId></xml>")
}

// waitFor polls cond every few milliseconds until it holds, failing the
// test with what() after timeout.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("gave up after %s: %s", timeout, what())
		case <-tick.C:
		}
	}
}

// waitDelivered waits until the fake has accepted n customer-service or
// template messages, and returns them.
func (h *harness) waitDelivered(t testing.TB, n int) []wechattest.Received {
	t.Helper()
	var got []wechattest.Received
	waitFor(t, 10*time.Second, func() bool { got = h.delivered(); return len(got) >= n }, func() string {
		return strconv.Itoa(len(got)) + " messages delivered, want " + strconv.Itoa(n) +
			"; " + strconv.Itoa(len(h.api.Received())) + " calls received; outbox " + statsString(h.outbox().Stats())
	})
	return got
}

func (h *harness) delivered() []wechattest.Received {
	return deliveredBy(h.api)
}

// deliveredBy is what api accepted of the customer-service and template
// messages it received.
func deliveredBy(api *wechattest.Server) []wechattest.Received {
	var out []wechattest.Received
	for _, r := range api.Received() {
		if r.OK() && (r.API == wechat.PathCustomSend || r.API == wechat.PathTemplateSend) {
			out = append(out, r)
		}
	}
	return out
}

// idle waits until nothing waits in the store and no send is under way:
// every message accepted, by this server or one before it on the same
// store, has ended as delivered or failed.
func (h *harness) idle(t testing.TB) {
	t.Helper()
	var st delivery.Stats
	pending := -1
	waitFor(t, 10*time.Second, func() bool {
		st = h.outbox().Stats()
		// Delivered+Failed exceeds Accepted when this server ends what
		// an earlier one accepted.
		if st.Delivered+st.Failed < st.Accepted || st.InFlight != 0 {
			return false
		}
		n, err := h.outbox().Pending(context.Background())
		pending = n
		return err == nil && n == 0
	}, func() string { return "outbox not idle: " + statsString(st) + ", pending " + strconv.Itoa(pending) })
}

func statsString(s delivery.Stats) string {
	return "accepted " + strconv.FormatInt(s.Accepted, 10) + ", delivered " + strconv.FormatInt(s.Delivered, 10) +
		", failed " + strconv.FormatInt(s.Failed, 10) + ", retried " + strconv.FormatInt(s.Retried, 10) +
		", in flight " + strconv.FormatInt(s.InFlight, 10)
}

// touch records in the store that openid last opened the window at at,
// as a callback then would have.
func (h *harness) touch(t testing.TB, openid string, at time.Time) {
	t.Helper()
	if _, err := h.srv.Store().Accept(context.Background(), &store.Batch{Now: at, Touch: openid}); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log sink that is safe for concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the log lines that contain every one of subs.
func (b *syncBuffer) lines(subs ...string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		ok := l != ""
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}
