package test

// The contract's "Callback security", end to end through server.New's
// wiring: with a key only encrypted callbacks are taken, a stale
// timestamp is refused, and one signed query serves one body, across a
// restart too.

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxreply/wxreply/server"
	"github.com/wxreply/wxreply/wechat"
)

// What the server logs when it refuses a stale timestamp and a reused
// query (the "http request" lines name the refusal otherwise).
const (
	logStale  = `"msg":"callback refused: its timestamp is too far from this server's clock; check the clock`
	logReused = `"msg":"callback refused: its signed URL was already used for another message`
)

// signedQuery is a callback query signed as WeChat signs one at at, with
// a nonce of its own, for a plaintext body.
func signedQuery(at time.Time, openid string) url.Values {
	ts := strconv.FormatInt(at.Unix(), 10)
	return wechat.CallbackQuery(testToken, ts, strconv.FormatInt(callbackNonce.Add(1), 10), openid, "")
}

// postQuery posts body to base's /wechat under the query q as it is.
func postQuery(t testing.TB, base string, q url.Values, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post(base+"/wechat?"+q.Encode(), "text/xml", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// verifyAt is WeChat's URL verification signed at at: the status and
// the body.
func verifyAt(t testing.TB, base string, at time.Time) (int, string) {
	t.Helper()
	ts := strconv.FormatInt(at.Unix(), 10)
	nonce := strconv.FormatInt(callbackNonce.Add(1), 10)
	q := url.Values{"signature": {wechat.Signature(testToken, ts, nonce)}, "timestamp": {ts}, "nonce": {nonce},
		"echostr": {"echo-" + nonce}}
	resp, err := http.Get(base + "/wechat?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 && string(out) != "echo-"+nonce {
		t.Errorf("verification answered %q, want the echostr", out)
	}
	return resp.StatusCode, string(out)
}

// refused is wxreply_callbacks_refused_total{reason} on h's /metrics.
func refused(t testing.TB, h *harness, reason string) float64 {
	t.Helper()
	code, metrics := h.do(t, "GET", "/metrics", "")
	if code != 200 {
		t.Fatalf("/metrics answered %d", code)
	}
	m := regexp.MustCompile(`(?m)^wxreply_callbacks_refused_total\{reason="` + regexp.QuoteMeta(reason) + `"\} (\S+)$`).FindStringSubmatch(metrics)
	if m == nil {
		t.Fatalf("/metrics has no wxreply_callbacks_refused_total{reason=%q}:\n%s", reason, metrics)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// sentTo is what h's fake WeChat was asked to send to openid, delivered
// or not.
func sentTo(h *harness, openid string) int {
	n := 0
	for _, r := range h.api.Received() {
		if r.OpenID == openid {
			n++
		}
	}
	return n
}

// compatBody is a compatible-mode body: the plaintext message with enc,
// the ciphertext, in it.
func compatBody(plain []byte, enc string) []byte {
	i := bytes.LastIndex(plain, []byte("</xml>"))
	return []byte(string(plain[:i]) + "<Encrypt><![CDATA[" + enc + "]]></Encrypt></xml>")
}

// TestPlaintextRefusedWithAKey: with an EncodingAESKey configured, a
// plaintext callback, though its signature is valid (it covers the
// token, timestamp and nonce, not the body), is refused 403 and causes
// nothing; compatible mode is taken, through its ciphertext: a plaintext
// part that says something else is not what is answered.
func TestPlaintextRefusedWithAKey(t *testing.T) {
	h := newHarness(t, harnessOptions{safe: true})
	forged := text("oPLAIN_forged_1", "hi", 970001)
	if code, body := postCallback(t, h.url, forged); code != http.StatusForbidden {
		t.Fatalf("plaintext callback with a key answered %d %q, want 403", code, body)
	}
	if got := refused(t, h, "plaintext"); got != 1 {
		t.Errorf(`wxreply_callbacks_refused_total{reason="plaintext"} = %v, want 1`, got)
	}
	if l := h.logs.lines(`"msg":"plaintext callback refused`); len(l) != 1 {
		t.Errorf("%d lines say the plaintext callback was refused, want 1:\n%s", len(l), h.logs.String())
	}

	// The compatible-mode capture: answered, and its reply sent.
	if code, body := postCallback(t, h.url, capture(t, "compat", "text.xml")); code != 200 {
		t.Fatalf("compatible-mode callback answered %d %q, want 200", code, body)
	}
	got := h.waitDelivered(t, 1)
	if got[0].OpenID != "oTEST_user_0001" || got[0].Custom.Text == nil || got[0].Custom.Text.Content != "你好！" {
		t.Fatalf("compatible mode: sent %s to %s, want the greeting to oTEST_user_0001", got[0].Body, got[0].OpenID)
	}
	// A compatible-mode body whose plaintext part is not its ciphertext's
	// message: the ciphertext's is the one answered.
	enc, err := h.cipher.Encrypt(text("oCOMPAT_user_1", "hi", 970002))
	if err != nil {
		t.Fatal(err)
	}
	if code, body := postCallback(t, h.url, compatBody(text("oPLAIN_forged_2", "link", 970003), enc)); code != 200 {
		t.Fatalf("compatible-mode callback answered %d %q, want 200", code, body)
	}
	h.waitDelivered(t, 2)
	h.idle(t)
	if n := sentTo(h, "oCOMPAT_user_1"); n != 1 {
		t.Errorf("%d messages to the ciphertext's sender, want 1", n)
	}
	for _, openid := range []string{"oPLAIN_forged_1", "oPLAIN_forged_2"} {
		if n := sentTo(h, openid); n != 0 {
			t.Errorf("%d messages sent to %s, named only in plaintext", n, openid)
		}
	}
	if n := len(h.delivered()); n != 2 {
		t.Errorf("%d messages delivered, want 2", n)
	}
	if got := refused(t, h, "plaintext"); got != 1 {
		t.Errorf(`wxreply_callbacks_refused_total{reason="plaintext"} = %v after compatible mode, want still 1`, got)
	}
}

// TestStaleTimestampRefused: a callback or URL verification whose
// timestamp is further than WXREPLY_MAX_CLOCK_SKEW (5 minutes by
// default) from the server's clock, either way, is refused 403, counted,
// and logged once, saying to check the clock; one within it is served.
// A negative MaxClockSkew turns the check off.
func TestStaleTimestampRefused(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		now := time.Now()
		for i, at := range []time.Time{now.Add(-10 * time.Minute), now.Add(10 * time.Minute)} {
			q := signedQuery(at, "oSTALE_user_1")
			if code, body := postQuery(t, h.url, q, text("oSTALE_user_1", "hi", int64(971001+i))); code != http.StatusForbidden {
				t.Errorf("callback signed %s from now answered %d %q, want 403", at.Sub(now).Round(time.Minute), code, body)
			}
			if code, body := verifyAt(t, h.url, at); code != http.StatusForbidden {
				t.Errorf("verification signed %s from now answered %d %q, want 403", at.Sub(now).Round(time.Minute), code, body)
			}
		}
		if got := refused(t, h, "stale"); got != 4 {
			t.Errorf(`wxreply_callbacks_refused_total{reason="stale"} = %v, want 4`, got)
		}
		// Logged, and once: an outsider replaying at full speed does not
		// fill the log.
		if l := h.logs.lines(logStale); len(l) != 1 {
			t.Errorf("%d lines say to check the clock, want 1:\n%s", len(l), h.logs.String())
		}

		// Four minutes old is fresh.
		at := now.Add(-4 * time.Minute)
		if code, body := postQuery(t, h.url, signedQuery(at, "oSTALE_user_2"), text("oSTALE_user_2", "hi", 971010)); code != 200 || body != "success" {
			t.Fatalf("callback signed 4 minutes ago answered %d %q, want 200 success", code, body)
		}
		if code, body := verifyAt(t, h.url, at); code != 200 {
			t.Fatalf("verification signed 4 minutes ago answered %d %q, want 200", code, body)
		}
		h.waitDelivered(t, 1)
		h.idle(t)
		if n, m := sentTo(h, "oSTALE_user_2"), sentTo(h, "oSTALE_user_1"); n != 1 || m != 0 {
			t.Errorf("sent %d to the fresh callback's sender and %d to the stale ones', want 1 and 0", n, m)
		}
		if got := refused(t, h, "stale"); got != 4 {
			t.Errorf(`wxreply_callbacks_refused_total{reason="stale"} = %v after fresh ones, want still 4`, got)
		}
	})

	t.Run("a skew of one minute", func(t *testing.T) {
		h := newHarness(t, harnessOptions{config: func(c *server.Config) { c.MaxClockSkew = time.Minute }})
		now := time.Now()
		if code, body := postQuery(t, h.url, signedQuery(now.Add(-2*time.Minute), "oSTALE_user_3"), text("oSTALE_user_3", "hi", 971004)); code != http.StatusForbidden {
			t.Errorf("callback signed 2 minutes ago answered %d %q, want 403", code, body)
		}
		if code, body := postQuery(t, h.url, signedQuery(now.Add(-30*time.Second), "oSTALE_user_3"), text("oSTALE_user_3", "hi", 971005)); code != 200 {
			t.Errorf("callback signed 30 seconds ago answered %d %q, want 200", code, body)
		}
	})

	t.Run("off", func(t *testing.T) {
		h := newHarness(t, harnessOptions{config: func(c *server.Config) { c.MaxClockSkew = -1 }})
		at := time.Date(2015, 3, 1, 12, 0, 0, 0, time.UTC)
		if code, body := postQuery(t, h.url, signedQuery(at, "oSTALE_user_4"), text("oSTALE_user_4", "hi", 971006)); code != 200 || body != "success" {
			t.Fatalf("callback signed in 2015, with the check off, answered %d %q, want 200 success", code, body)
		}
		if code, body := verifyAt(t, h.url, at); code != 200 {
			t.Fatalf("verification signed in 2015, with the check off, answered %d %q, want 200", code, body)
		}
		h.waitDelivered(t, 1)
		if got := refused(t, h, "stale"); got != 0 {
			t.Errorf(`wxreply_callbacks_refused_total{reason="stale"} = %v with the check off, want 0`, got)
		}
	})
}

// TestOneQueryOneBody: a signed query seen with one body (a leaked
// callback URL: a proxy's log, say) does not carry another: a second
// body under it, as another user, is refused 403 and sends nothing, while
// the first body again is WeChat's retry, answered once. The store keeps
// the binding: after a restart on the same directory the second body is
// still refused.
func TestOneQueryOneBody(t *testing.T) {
	dir := t.TempDir()
	h1 := newHarness(t, harnessOptions{store: dir})
	q := signedQuery(time.Now(), "oQUERY_user_1")
	first := text("oQUERY_user_1", "hi", 972001)
	other := text("oQUERY_invented", "hi", 972002)
	if code, body := postQuery(t, h1.url, q, first); code != 200 || body != "success" {
		t.Fatalf("first body answered %d %q, want 200 success", code, body)
	}
	if code, body := postQuery(t, h1.url, q, other); code != http.StatusForbidden {
		t.Fatalf("another body under the same query answered %d %q, want 403", code, body)
	}
	if code, body := postQuery(t, h1.url, q, first); code != 200 || body != "success" {
		t.Fatalf("the first body again answered %d %q, want 200 success", code, body)
	}
	h1.waitDelivered(t, 1)
	h1.idle(t)
	if n, m := len(h1.delivered()), sentTo(h1, "oQUERY_invented"); n != 1 || m != 0 {
		t.Fatalf("%d delivered (%d to the invented openid), want 1 (none)", n, m)
	}
	if l := h1.logs.lines(`"msg":"callback"`, `"msg_id":"972001"`, `"outcome":"retry"`); len(l) != 1 {
		t.Errorf("the first body again was not answered as a retry:\n%s", h1.logs.String())
	}
	if got := refused(t, h1, "reused"); got != 1 {
		t.Errorf(`wxreply_callbacks_refused_total{reason="reused"} = %v, want 1`, got)
	}
	if l := h1.logs.lines(logReused); len(l) != 1 {
		t.Errorf("%d lines say the query was reused, want 1:\n%s", len(l), h1.logs.String())
	}

	if err := h1.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	h2 := newHarness(t, harnessOptions{store: dir, api: h1.api})
	if code, body := postQuery(t, h2.url, q, other); code != http.StatusForbidden {
		t.Fatalf("after a restart, another body under the old query answered %d %q, want 403", code, body)
	}
	if code, body := postQuery(t, h2.url, q, first); code != 200 || body != "success" {
		t.Fatalf("after a restart, the first body again answered %d %q, want 200 success", code, body)
	}
	h2.idle(t)
	if n, m := len(h2.delivered()), sentTo(h2, "oQUERY_invented"); n != 1 || m != 0 {
		t.Fatalf("after the restart %d delivered in all (%d to the invented openid), want 1 (none)", n, m)
	}
	if got := refused(t, h2, "reused"); got != 1 {
		t.Errorf(`after the restart wxreply_callbacks_refused_total{reason="reused"} = %v, want 1`, got)
	}
}

// TestThousandBodiesUnderOneURL: a thousand messages, each from another
// invented user, posted at once under one signed URL: one is taken, 999
// are refused 403, and one reply is sent.
func TestThousandBodiesUnderOneURL(t *testing.T) {
	h := newHarness(t, harnessOptions{quiet: true})
	q := signedQuery(time.Now(), "oFLOOD")
	const n, workers = 1000, 16
	var next atomic.Int64
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := next.Add(1); i <= n; i = next.Add(1) {
				code, _ := postQuery(t, h.url, q, text("oFLOOD_user_"+strconv.FormatInt(i, 10), "hi", 973000+i))
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if codes[200] != 1 || codes[http.StatusForbidden] != n-1 {
		t.Fatalf("answers %v, want one 200 and %d 403", codes, n-1)
	}
	h.waitDelivered(t, 1)
	h.idle(t)
	if got := len(h.delivered()); got != 1 {
		t.Fatalf("%d replies sent for %d bodies under one URL, want 1", got, n)
	}
	if got := refused(t, h, "reused"); got != n-1 {
		t.Errorf(`wxreply_callbacks_refused_total{reason="reused"} = %v, want %d`, got, n-1)
	}
	if l := h.logs.lines(logReused); len(l) != 1 {
		t.Errorf("%d lines say the query was reused, want 1: the log is throttled", len(l))
	}
}

// fakeClock is time.Now moved on by what the test says.
type fakeClock struct{ off atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *fakeClock) advance(d time.Duration) { c.off.Add(int64(d)) }

// TestReplayWithinTheWindowAnsweredOnce: the same (query, body) again
// three minutes later, while its timestamp is still fresh, is answered as
// WeChat's retry and sends nothing more: the retry-dedupe mark lives as
// long as a timestamp may be fresh (twice the skew), not only the default
// minute. Once the timestamp is stale the query is refused.
func TestReplayWithinTheWindowAnsweredOnce(t *testing.T) {
	clock := &fakeClock{}
	h := newHarness(t, harnessOptions{config: func(c *server.Config) { c.Now = clock.Now }})
	q := signedQuery(clock.Now(), "oREPLAY_user_1")
	msg := text("oREPLAY_user_1", "hi", 974001)
	if code, body := postQuery(t, h.url, q, msg); code != 200 || body != "success" {
		t.Fatalf("first copy answered %d %q, want 200 success", code, body)
	}
	h.waitDelivered(t, 1)
	h.idle(t)

	clock.advance(3 * time.Minute)
	if code, body := postQuery(t, h.url, q, msg); code != 200 || body != "success" {
		t.Fatalf("the same copy 3 minutes later answered %d %q, want 200 success", code, body)
	}
	h.idle(t)
	if n := len(h.delivered()); n != 1 {
		t.Fatalf("%d replies sent for one message posted twice 3 minutes apart, want 1", n)
	}
	if l := h.logs.lines(`"msg":"callback"`, `"msg_id":"974001"`, `"outcome":"retry"`); len(l) != 1 {
		t.Errorf("the copy 3 minutes later was not answered as a retry:\n%s", h.logs.String())
	}

	clock.advance(3 * time.Minute) // six minutes after its timestamp
	if code, body := postQuery(t, h.url, q, msg); code != http.StatusForbidden {
		t.Fatalf("the same copy 6 minutes later answered %d %q, want 403", code, body)
	}
	if got := refused(t, h, "stale"); got != 1 {
		t.Errorf(`wxreply_callbacks_refused_total{reason="stale"} = %v, want 1`, got)
	}
	if n := len(h.delivered()); n != 1 {
		t.Fatalf("%d replies sent, want 1", n)
	}
}
