package tools

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/handlers"
	"github.com/wxreply/wxreply/wechat"
)

// The test account of test/testdata (see its README).
const (
	capToken  = "wxreplytoken"
	capAppID  = "wxtest0000000001"
	capAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
)

// echoResponder answers text messages with a passive text reply and
// records every message it was handed.
type echoResponder struct {
	mu  sync.Mutex
	got []*wechat.Message
}

func (r *echoResponder) Respond(_ context.Context, m *wechat.Message) ([]byte, error) {
	r.mu.Lock()
	r.got = append(r.got, m)
	r.mu.Unlock()
	if m.MsgType != wechat.MsgTypeText {
		return nil, nil
	}
	reply := &wechat.CustomMessage{MsgType: wechat.MsgTypeText, Text: &wechat.Text{Content: "echo: " + m.Content}}
	return wechat.EncodeReply(m.FromUserName, m.ToUserName, time.Now().Unix(), reply)
}

func (r *echoResponder) messages() []*wechat.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*wechat.Message(nil), r.got...)
}

// wechatServer is the real Echo server on loopback, recording the query
// and Content-Type of each request before it is handled.
type wechatServer struct {
	*httptest.Server
	responder *echoResponder
	mu        sync.Mutex
	queries   []url.Values
	types     []string
}

func newWeChatServer(t *testing.T, encrypted bool) *wechatServer {
	t.Helper()
	cfg := handlers.Config{
		Token:     capToken,
		Responder: &echoResponder{},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if encrypted {
		c, err := wechat.NewCipher(capAESKey, capAppID)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Cipher = c
	}
	e := handlers.New(cfg)
	ws := &wechatServer{responder: cfg.Responder.(*echoResponder)}
	ws.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws.mu.Lock()
		ws.queries = append(ws.queries, r.URL.Query())
		ws.types = append(ws.types, r.Header.Get("Content-Type"))
		ws.mu.Unlock()
		e.ServeHTTP(w, r)
	}))
	t.Cleanup(ws.Close)
	return ws
}

func captures(t *testing.T, mode string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "test", "testdata", mode, "*.xml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no captures in test/testdata/%s: %v", mode, err)
	}
	return files
}

func TestReplayCaptures(t *testing.T) {
	tests := []struct {
		name      string
		mode      string // the capture folder
		encrypted bool   // server and replay in safe mode
	}{
		{"plaintext", "plain", false},
		{"plain captures encrypted on the way", "plain", true},
		{"safe mode captures as they are", "safe", true},
		{"compatible mode captures as they are", "compat", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newWeChatServer(t, tt.encrypted)
			files := captures(t, tt.mode)
			var out, errOut bytes.Buffer
			o := ReplayOptions{URL: srv.URL + "/wechat", Token: capToken, Stdout: &out, Stderr: &errOut}
			if tt.encrypted {
				o.AESKey, o.AppID = capAESKey, capAppID
			}
			before := time.Now().Unix()
			if err := Replay(context.Background(), o, files...); err != nil {
				t.Fatalf("Replay: %v\nstderr:\n%s\nstdout:\n%s", err, &errOut, &out)
			}

			got := srv.responder.messages()
			if len(got) != len(files) {
				t.Fatalf("server handled %d messages, want %d", len(got), len(files))
			}
			for i, f := range files {
				plain, err := os.ReadFile(filepath.Join("..", "test", "testdata", "plain", filepath.Base(f)))
				if err != nil {
					t.Fatal(err)
				}
				want, err := wechat.ParseMessage(plain)
				if err != nil {
					t.Fatal(err)
				}
				if got[i].FromUserName != want.FromUserName || got[i].MsgType != want.MsgType || got[i].CreateTime != want.CreateTime {
					t.Errorf("%s: server got %s/%s/%d, want %s/%s/%d", f, got[i].FromUserName, got[i].MsgType, got[i].CreateTime, want.FromUserName, want.MsgType, want.CreateTime)
				}
				q := srv.queries[i]
				if q.Get("openid") != want.FromUserName {
					t.Errorf("%s: openid=%q, want %q", f, q.Get("openid"), want.FromUserName)
				}
				if ts, _ := strconv.ParseInt(q.Get("timestamp"), 10, 64); ts < before || ts > time.Now().Unix() {
					t.Errorf("%s: timestamp %q is not now", f, q.Get("timestamp"))
				}
				if enc := q.Get("encrypt_type") == "aes"; enc != tt.encrypted {
					t.Errorf("%s: encrypt_type=%q", f, q.Get("encrypt_type"))
				}
				if srv.types[i] != "text/xml" {
					t.Errorf("%s: Content-Type %q", f, srv.types[i])
				}
				if !strings.Contains(out.String(), f+": 200 OK") {
					t.Errorf("output does not report %s: 200 OK", f)
				}
			}
			// The text capture's passive reply is shown readable, and in
			// safe mode it was checked.
			text := filepath.Join("..", "test", "testdata", tt.mode, "text.xml")
			section := outputFor(out.String(), text)
			if !strings.Contains(section, "<Content><![CDATA[echo: 你好]]></Content>") {
				t.Errorf("reply to text.xml not shown:\n%s", section)
			}
			if tt.encrypted != strings.Contains(section, "encrypted reply, msg_signature ok") {
				t.Errorf("encrypted reply not reported as such:\n%s", section)
			}
			if errOut.Len() != 0 {
				t.Errorf("stderr: %s", &errOut)
			}
		})
	}
}

// outputFor returns the lines Replay printed for file.
func outputFor(out, file string) string {
	i := strings.Index(out, file+": ")
	if i < 0 {
		return ""
	}
	rest := out[i:]
	if j := strings.Index(rest[1:], "\n../"); j >= 0 {
		rest = rest[:j+1]
	}
	return rest
}

// closedURL is the URL of a loopback port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	return "http://" + ln.Addr().String()
}

func TestReplayFailures(t *testing.T) {
	down := closedURL(t)
	plainSrv := newWeChatServer(t, false)
	safeSrv := newWeChatServer(t, true)
	text := filepath.Join("..", "test", "testdata", "plain", "text.xml")
	click := filepath.Join("..", "test", "testdata", "plain", "event_click.xml")
	tests := []struct {
		name       string
		o          ReplayOptions
		files      []string
		wantErr    string
		wantStderr []string
		wantPosted int
	}{
		{"wrong token", ReplayOptions{URL: plainSrv.URL + "/wechat", Token: "nope"}, []string{text, click},
			"2 of 2 files failed", []string{text + ": answered 403 Forbidden"}, 0},
		{"missing file does not stop the others", ReplayOptions{URL: plainSrv.URL + "/wechat", Token: capToken}, []string{"no/such.xml", text},
			"1 of 2 files failed", []string{"no/such.xml: open no/such.xml"}, 1},
		{"encrypted reply, no key to read it", ReplayOptions{URL: safeSrv.URL + "/wechat", Token: capToken}, []string{filepath.Join("..", "test", "testdata", "safe", "text.xml")},
			"1 of 1 files failed", []string{"the answer is encrypted, but no EncodingAESKey"}, 1},
		{"encrypted replay, server without a key", ReplayOptions{URL: plainSrv.URL + "/wechat", Token: capToken, AESKey: capAESKey, AppID: capAppID}, []string{click},
			"1 of 1 files failed", []string{"answered 400 Bad Request"}, 0},
		{"wrong AppID", ReplayOptions{URL: safeSrv.URL + "/wechat", Token: capToken, AESKey: capAESKey, AppID: "wxother"}, []string{text},
			"1 of 1 files failed", []string{"answered 403 Forbidden"}, 0},
		{"server down", ReplayOptions{URL: down + "/wechat", Token: capToken}, []string{text},
			"1 of 1 files failed", []string{text + ": cannot reach " + down + "/wechat: ", "connection refused (is the server running?)"}, 0},
		{"server down stops at the first file", ReplayOptions{URL: down + "/wechat", Token: capToken}, []string{text, click, text},
			"1 of 3 files failed, the other 2 not sent: the server is unreachable", []string{"cannot reach " + down + "/wechat"}, 0},
		{"no token", ReplayOptions{URL: plainSrv.URL}, []string{text}, "WECHAT_TOKEN", nil, 0},
		{"no url", ReplayOptions{Token: capToken}, []string{text}, "-url is required", nil, 0},
		{"bad url", ReplayOptions{URL: "localhost:8080", Token: capToken}, []string{text}, `-url "localhost:8080": want an http:// or https:// URL`, nil, 0},
		{"not http", ReplayOptions{URL: "ftp://127.0.0.1/wechat", Token: capToken}, []string{text}, "want an http:// or https:// URL", nil, 0},
		{"AES key without AppID", ReplayOptions{URL: plainSrv.URL, Token: capToken, AESKey: capAESKey}, []string{text}, "WECHAT_APPID", nil, 0},
		{"bad AES key", ReplayOptions{URL: plainSrv.URL, Token: capToken, AESKey: "short", AppID: capAppID}, []string{text}, "must be 43 characters", nil, 0},
		{"no files", ReplayOptions{URL: plainSrv.URL, Token: capToken}, nil, "no files", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			tt.o.Stdout, tt.o.Stderr = &out, &errOut
			before := len(plainSrv.responder.messages()) + len(safeSrv.responder.messages())
			err := Replay(context.Background(), tt.o, tt.files...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr does not say %q:\n%s", w, &errOut)
				}
			}
			if strings.Contains(err.Error()+errOut.String(), capAESKey) {
				t.Error("the AES key was printed")
			}
			if strings.Contains(errOut.String(), "signature=") {
				t.Errorf("an error repeats the signed query:\n%s", &errOut)
			}
			posted := len(plainSrv.responder.messages()) + len(safeSrv.responder.messages()) - before
			if posted != tt.wantPosted {
				t.Errorf("%d messages reached the responder, want %d", posted, tt.wantPosted)
			}
		})
	}
}

// An https:// URL is posted over TLS: with a client that trusts the
// server's certificate it works as over http, and an untrusted one is a
// clear error naming the server.
func TestReplayHTTPS(t *testing.T) {
	e := handlers.New(handlers.Config{
		Token:     capToken,
		Responder: &echoResponder{},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	srv := httptest.NewTLSServer(e)
	t.Cleanup(srv.Close)
	text := filepath.Join("..", "test", "testdata", "plain", "text.xml")

	var out bytes.Buffer
	err := Replay(context.Background(), ReplayOptions{URL: srv.URL + "/wechat", Token: capToken, Client: srv.Client(), Stdout: &out}, text)
	if err != nil || !strings.Contains(out.String(), text+": 200 OK") || !strings.Contains(out.String(), "echo: ") {
		t.Fatalf("trusted certificate: %v\n%s", err, &out)
	}

	var errOut bytes.Buffer
	err = Replay(context.Background(), ReplayOptions{URL: srv.URL + "/wechat", Token: capToken, Stderr: &errOut}, text)
	if err == nil || !strings.Contains(errOut.String(), "cannot reach "+srv.URL+"/wechat: ") || !strings.Contains(errOut.String(), "certificate") {
		t.Errorf("untrusted certificate: %v\n%s", err, &errOut)
	}
}
