package handlers

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// How a fuzzed request is built from its mode byte. Deriving the signing
// from the input lets one target reach both the refusals and everything
// behind a valid signature.
const (
	fzSigned      = 1 << iota // a correct signature; otherwise a wrong or missing one
	fzNoSignature             // unsigned requests carry no signature at all
	fzMsgSig                  // encrypt_type=aes and a correct msg_signature over the body's <Encrypt>
	fzSeal                    // encrypt the body as WeChat would and post the safe-mode envelope
	fzCipher                  // the server has an EncodingAESKey
	fzGet                     // GET (URL verification) instead of POST
	fzRepeat                  // every query parameter given twice, the second copy garbage
	fzNoTimestamp             // leave out timestamp
)

// fuzzStatuses are the only answers bad input may get.
var fuzzStatuses = map[int]bool{200: true, 400: true, 401: true, 403: true, 413: true}

// countingResponder counts messages and answers a passive text reply to
// anything with Content, to exercise reply encoding and encryption.
type countingResponder struct{ n atomic.Int64 }

func (r *countingResponder) Respond(_ context.Context, m *wechat.Message) ([]byte, error) {
	r.n.Add(1)
	if m.Content == "" {
		return nil, nil
	}
	reply, err := wechat.EncodeReply(m.FromUserName, m.ToUserName, 1700000000,
		&wechat.CustomMessage{MsgType: "text", Text: &wechat.Text{Content: "收到：" + m.Content}})
	if err != nil {
		// As the real Responder does: no passive reply, answer success.
		return nil, nil
	}
	return reply, nil
}

// captureFiles lists test/testdata's captures as mode/name.
func captureFiles(tb testing.TB) []string {
	tb.Helper()
	var out []string
	for _, mode := range []string{"plain", "safe", "compat"} {
		files, err := filepath.Glob(filepath.Join("..", "test", "testdata", mode, "*.xml"))
		if err != nil || len(files) == 0 {
			tb.Fatalf("no captures under test/testdata/%s: %v", mode, err)
		}
		for _, f := range files {
			out = append(out, filepath.Join(mode, filepath.Base(f)))
		}
	}
	return out
}

// fuzzRequest builds the request mode describes: its method, its path
// with the query, and its body. signed reports whether everything the
// server checks was signed correctly.
func fuzzRequest(tb testing.TB, cipher *wechat.Cipher, body []byte, mode uint8, timestamp, nonce, echostr string) (method, target string, _ []byte, signed bool) {
	q := url.Values{}
	signed = mode&fzSigned != 0 && timestamp != "" && nonce != "" && mode&fzNoTimestamp == 0
	switch {
	case mode&fzSigned != 0:
		q.Set("signature", wechat.Signature(testToken, timestamp, nonce))
	case mode&fzNoSignature == 0:
		q.Set("signature", wechat.Signature("not-the-token", timestamp, nonce))
	}
	if mode&fzNoTimestamp == 0 {
		q.Set("timestamp", timestamp)
	}
	q.Set("nonce", nonce)
	q.Set("openid", "oFUZZ")
	method = http.MethodPost
	if mode&fzGet != 0 {
		method = http.MethodGet
		q.Set("echostr", echostr)
	} else {
		encrypt := ""
		if mode&fzSeal != 0 {
			enc, err := cipher.Encrypt(body)
			if err != nil {
				tb.Fatal(err)
			}
			body, encrypt = wechat.SafeModeBody("gh_fuzz", enc), enc
		} else if m, err := wechat.ParseMessage(body); err == nil {
			encrypt = m.Encrypt
		}
		if mode&(fzSeal|fzMsgSig) != 0 {
			q.Set("encrypt_type", "aes")
			q.Set("msg_signature", wechat.Signature(testToken, timestamp, nonce, encrypt))
		}
	}
	if mode&fzRepeat != 0 {
		for k := range q {
			q.Add(k, "garbage")
		}
	}
	return method, "/wechat?" + q.Encode(), body, signed
}

// checkAnswer holds the invariants every answer keeps, whatever the input.
func checkAnswer(t *testing.T, cipher *wechat.Cipher, mode uint8, signed bool, echostr string, code int, body string) {
	t.Helper()
	if !fuzzStatuses[code] {
		t.Fatalf("status %d (%q), want one of 200, 400, 401, 403, 413", code, body)
	}
	if !signed && code != 401 && code != 403 {
		t.Fatalf("a request without a valid signature got %d, want 401 or 403", code)
	}
	if code != 200 {
		return
	}
	if mode&fzGet != 0 {
		if body != echostr {
			t.Fatalf("URL verification answered %q, want echostr %q", body, echostr)
		}
		return
	}
	if body == "success" {
		return
	}
	reply, err := wechat.ParseMessage([]byte(body))
	if err != nil {
		t.Fatalf("passive reply does not parse: %v\n%s", err, body)
	}
	if reply.Encrypt != "" {
		if cipher == nil {
			t.Fatal("an encrypted reply from a server without a key")
		}
		if _, err := cipher.Decrypt(reply.Encrypt); err != nil {
			t.Fatalf("encrypted reply does not decrypt: %v", err)
		}
	} else if mode&fzSeal != 0 {
		t.Fatalf("a sealed message was answered in plaintext: %s", body)
	}
}

func FuzzCallback(f *testing.F) {
	for _, name := range captureFiles(f) {
		b, err := os.ReadFile(filepath.Join("..", "test", "testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(fzSigned), "1700000000", "nonce", "")
		f.Add(b, uint8(fzSigned|fzMsgSig|fzCipher), "1700000000", "nonce", "")
		f.Add(b, uint8(fzSigned|fzMsgSig), "1700000000", "nonce", "")
		f.Add(b, uint8(fzMsgSig|fzCipher), "1700000000", "nonce", "")
		if strings.HasPrefix(name, "plain") {
			f.Add(b, uint8(fzSigned|fzSeal|fzCipher), "1700000001", "n", "")
			f.Add(b, uint8(fzSigned|fzSeal), "1700000001", "n", "")
		}
	}
	for _, s := range []string{
		"", "<xml/>", "<xml><MsgType>text</MsgType>",
		`<!DOCTYPE xml [<!ENTITY x "y">]><xml><Content>&x;</Content></xml>`,
		"<xml><Encrypt>AAAA</Encrypt></xml>",
	} {
		f.Add([]byte(s), uint8(fzSigned|fzCipher|fzMsgSig), "1", "2", "")
		f.Add([]byte(s), uint8(fzSigned|fzCipher|fzSeal), "1", "2", "")
	}
	f.Add([]byte(nil), uint8(fzSigned|fzGet), "1700000000", "nonce", "8410154286491392")
	f.Add([]byte(nil), uint8(fzSigned|fzGet|fzRepeat), "1", "2", "<script>\x00\n")
	f.Add([]byte(nil), uint8(fzGet|fzNoSignature), "1", "2", "x")
	f.Add(bytes.Repeat([]byte("x"), MaxBodyBytes+1), uint8(fzSigned), "1", "2", "")

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cipher, err := wechat.NewCipher(testAESKey, testAppID)
	if err != nil {
		f.Fatal(err)
	}
	plain := New(Config{Token: testToken, Responder: &countingResponder{}, Logger: log})
	encrypted := New(Config{Token: testToken, Cipher: cipher, Responder: &countingResponder{}, Logger: log})

	f.Fuzz(func(t *testing.T, body []byte, mode uint8, timestamp, nonce, echostr string) {
		srv, srvCipher := plain, (*wechat.Cipher)(nil)
		if mode&fzCipher != 0 {
			srv, srvCipher = encrypted, cipher
		}
		method, target, body, signed := fuzzRequest(t, cipher, body, mode, timestamp, nonce, echostr)
		req := httptest.NewRequest(method, target, bytes.NewReader(body))
		req.Header.Set("Content-Type", "text/xml")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		checkAnswer(t, srvCipher, mode, signed, echostr, rec.Code, rec.Body.String())
	})
}

// TestHealthyAfterGarbage sends a burst of garbage, half of it correctly
// signed, over real connections from several clients at once, then checks
// every answer was a 4xx or 200 and the server still takes a good
// callback and answers /healthz.
func TestHealthyAfterGarbage(t *testing.T) {
	cipher := testCipher(t)
	rec := &countingResponder{}
	srv := newTestServer(t, rec, cipher)
	files := captureFiles(t)
	var captures [][]byte
	for _, name := range files {
		b, err := os.ReadFile(filepath.Join("..", "test", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		captures = append(captures, b)
	}

	const workers, perWorker = 8, 100
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(1, uint64(w)))
			for range perWorker {
				body := garbage(rng, captures)
				mode := uint8(rng.UintN(256)) &^ fzGet
				if rng.IntN(4) == 0 {
					mode |= fzGet
				}
				method, target, body, signed := fuzzRequest(t, cipher, body, mode|fzCipher, strconv.Itoa(rng.IntN(1e9)), strconv.Itoa(rng.IntN(1e9)), "echo")
				req, err := http.NewRequest(method, srv.URL+target, bytes.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Errorf("request failed (dropped connection?): %v", err)
					return
				}
				out, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !fuzzStatuses[resp.StatusCode] || (!signed && resp.StatusCode < 400) {
					t.Errorf("mode %#x signed %v: status %d (%s)", mode, signed, resp.StatusCode, out)
				}
			}
		}()
	}
	wg.Wait()

	before := rec.n.Load()
	msg := []byte("<xml><ToUserName>gh_test0000001</ToUserName><FromUserName>oAFTER</FromUserName>" +
		"<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>still there?</Content><MsgId>987654321</MsgId></xml>")
	enc, err := cipher.Encrypt(msg)
	if err != nil {
		t.Fatal(err)
	}
	good := wechat.CallbackQuery(testToken, strconv.FormatInt(time.Now().Unix(), 10), "n", "o", enc)
	code, body := post(t, srv.URL+"/wechat?"+good.Encode(), wechat.SafeModeBody("gh_test0000001", enc))
	if code != 200 || rec.n.Load() != before+1 {
		t.Fatalf("after the burst a good callback got %d %q", code, body)
	}
	checkReplyMode(t, cipher, "after the burst", body, true, "still there?")
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz %d after the burst", resp.StatusCode)
	}
}

// garbage returns a random body: noise, a capture cut short or with
// bytes flipped, or one over the size limit.
func garbage(rng *rand.Rand, captures [][]byte) []byte {
	c := captures[rng.IntN(len(captures))]
	switch rng.IntN(5) {
	case 0:
		b := make([]byte, rng.IntN(2048))
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	case 1:
		return c[:rng.IntN(len(c)+1)]
	case 2:
		b := bytes.Clone(c)
		for range 1 + rng.IntN(8) {
			b[rng.IntN(len(b))] = byte(rng.UintN(256))
		}
		return b
	case 3:
		return bytes.Repeat(c, MaxBodyBytes/len(c)+1)
	default:
		return c
	}
}
