package handlers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
)

// accessClock is a clock the test moves.
type accessClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *accessClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *accessClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// accessLog keeps the server's JSON log lines.
type accessLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *accessLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// lines are the log's lines whose msg starts with prefix.
func (l *accessLog) lines(t *testing.T, prefix string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if msg, _ := m["msg"].(string); strings.HasPrefix(msg, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// statusOnlyOutbox is a push API outbox that knows no message: a GET of a
// status with the right key answers 404, which is not a 429.
type statusOnlyOutbox struct{}

func (statusOnlyOutbox) Accept(context.Context, delivery.Request) (delivery.Accepted, error) {
	return delivery.Accepted{}, fmt.Errorf("not in this test")
}

func (statusOnlyOutbox) Status(context.Context, string) (store.Status, bool, error) {
	return store.Status{}, false, nil
}

func (statusOnlyOutbox) WindowOpen(context.Context, string) (bool, bool, error) {
	return false, false, nil
}

type accessEnv struct {
	e     *echo.Echo
	clock *accessClock
	log   *accessLog
}

// newAccessEnv is the real handler stack (New) with the push API on, the
// metrics on, a clock the test moves and a kept log; edit sets the access
// settings.
func newAccessEnv(t *testing.T, edit func(*Config)) *accessEnv {
	t.Helper()
	env := &accessEnv{clock: &accessClock{now: time.Unix(1_700_000_000, 0)}, log: &accessLog{}}
	cfg := Config{
		Token:     testToken,
		Responder: nopResponder{},
		Logger:    slog.New(slog.NewJSONHandler(env.log, nil)),
		Now:       env.clock.Now,
		Push:      &PushConfig{APIKey: testAPIKey, Outbox: statusOnlyOutbox{}},
		Metrics:   NewMetrics(),
	}
	edit(&cfg)
	env.e = New(cfg)
	return env
}

func mustNetworks(t *testing.T, list string) []netip.Prefix {
	t.Helper()
	nets, err := ParseNetworks(list)
	if err != nil {
		t.Fatal(err)
	}
	return nets
}

// from is a request as it reaches the server from peer (the TCP peer,
// "host:port"), with one X-Forwarded-For header line per xff.
func (env *accessEnv) from(method, target, peer string, header http.Header, xff ...string) *httptest.ResponseRecorder {
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[oTEST_user_0001]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><MsgId>1</MsgId></xml>`)
	}
	r := httptest.NewRequest(method, target, body)
	r.RemoteAddr = peer
	for k, vs := range header {
		r.Header[k] = vs
	}
	for _, v := range xff {
		r.Header.Add(echo.HeaderXForwardedFor, v)
	}
	w := httptest.NewRecorder()
	env.e.ServeHTTP(w, r)
	return w
}

// signedPath is a callback path signed with the test token, with echostr
// for the URL verification.
func (env *accessEnv) signedPath() string {
	ts := strconv.FormatInt(env.clock.Now().Unix(), 10)
	q := wechat.CallbackQuery(testToken, ts, "nonce123", "oTEST_user_0001", "")
	q.Set("echostr", "echo-4711")
	return "/wechat?" + q.Encode()
}

// metric is the value of the series of /metrics that starts with series.
func (env *accessEnv) metric(t *testing.T, series string) float64 {
	t.Helper()
	w := env.from(http.MethodGet, "/metrics", "127.0.0.1:9000", nil)
	for line := range strings.SplitSeq(w.Body.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("no %s in /metrics:\n%s", series, w.Body.String())
	return 0
}

func TestParseNetworks(t *testing.T) {
	nets, err := ParseNetworks(" 10.0.0.0/8, 203.0.113.7 ,2001:db8::/32,, ::ffff:192.168.0.0/112, 192.168.1.9/16")
	if err != nil {
		t.Fatal(err)
	}
	want := "[10.0.0.0/8 203.0.113.7/32 2001:db8::/32 192.168.0.0/16 192.168.0.0/16]"
	if got := fmt.Sprint(nets); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if nets, err := ParseNetworks(""); err != nil || nets != nil {
		t.Errorf(`"" is %v, %v; want none`, nets, err)
	}
	for _, bad := range []string{"10.0.0.300/8", "10.0.0.0/33", "example.com", "10.0.0.0/8,nope", "fe80::1%eth0"} {
		if _, err := ParseNetworks(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// Without WXREPLY_ALLOW_FROM callbacks come from anywhere, and
// X-Forwarded-For changes nothing.
func TestAllowFromOff(t *testing.T) {
	env := newAccessEnv(t, func(*Config) {})
	for _, peer := range []string{"198.51.100.7:1234", "[2001:db8::1]:443"} {
		if w := env.from(http.MethodGet, env.signedPath(), peer, nil, "10.9.9.9"); w.Code != 200 || w.Body.String() != "echo-4711" {
			t.Errorf("from %s: %d %q, want 200 echo-4711", peer, w.Code, w.Body)
		}
	}
}

func TestAllowFrom(t *testing.T) {
	const allowed, refused = http.StatusOK, http.StatusForbidden
	tests := []struct {
		name    string
		trusted string // WXREPLY_TRUSTED_PROXIES
		peer    string
		xff     []string
		want    int
	}{
		{"peer in a network", "", "10.1.2.3:5555", nil, allowed},
		{"peer is a listed address", "", "203.0.113.7:5555", nil, allowed},
		{"peer outside", "", "198.51.100.7:5555", nil, refused},
		{"untrusted peer claims an allowed client", "", "198.51.100.7:5555", []string{"10.1.2.3"}, refused},
		{"no proxy trusted: an allowed peer's X-Forwarded-For is ignored", "", "10.1.2.3:5555", []string{"198.51.100.7"}, allowed},
		{"trusted proxy forwards an allowed client", "192.0.2.0/24", "192.0.2.10:5555", []string{"10.1.2.3"}, allowed},
		{"trusted proxy forwards an outsider", "192.0.2.0/24", "192.0.2.10:5555", []string{"198.51.100.7"}, refused},
		{"outsider spoofs the leftmost entry", "192.0.2.0/24", "192.0.2.10:5555", []string{"10.1.2.3, 198.51.100.7"}, refused},
		{"two trusted proxies", "192.0.2.0/24", "192.0.2.10:5555", []string{"198.51.100.7, 10.1.2.3, 192.0.2.11"}, allowed},
		{"two header lines", "192.0.2.0/24", "192.0.2.10:5555", []string{"10.1.2.3", "192.0.2.11"}, allowed},
		{"two header lines, the outsider in the last", "192.0.2.0/24", "192.0.2.10:5555", []string{"10.1.2.3", "198.51.100.7"}, refused},
		{"trusted proxy without X-Forwarded-For is the client", "192.0.2.0/24", "192.0.2.10:5555", nil, refused},
		{"trusted proxy forwards garbage", "192.0.2.0/24", "192.0.2.10:5555", []string{"10.1.2.3, unknown"}, refused},
		{"entry with a port", "192.0.2.0/24", "192.0.2.10:5555", []string{"10.1.2.3:4711"}, allowed},
		{"IPv6 peer in a network", "", "[2001:db8::1]:443", nil, allowed},
		{"IPv6 peer outside", "", "[2001:db9::1]:443", nil, refused},
		{"IPv6 peer with a zone", "", "[2001:db8::1%eth0]:443", nil, allowed},
		{"IPv4-mapped peer", "", "[::ffff:10.1.2.3]:443", nil, allowed},
		{"IPv6 trusted proxy forwards an IPv6 client", "2001:db8:ffff::/48", "[2001:db8:ffff::1]:443", []string{"2001:db8::5"}, allowed},
		{"IPv6 client in brackets with a port", "2001:db8:ffff::/48", "[2001:db8:ffff::1]:443", []string{"[2001:db8::5]:1234"}, allowed},
		{"IPv6 trusted proxy forwards an outsider", "2001:db8:ffff::/48", "[2001:db8:ffff::1]:443", []string{"2001:db9::5"}, refused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newAccessEnv(t, func(c *Config) {
				c.AllowFrom = mustNetworks(t, "10.0.0.0/8, 203.0.113.7, 2001:db8::/32")
				c.TrustedProxies = mustNetworks(t, tt.trusted)
			})
			get := env.from(http.MethodGet, env.signedPath(), tt.peer, nil, tt.xff...)
			post := env.from(http.MethodPost, env.signedPath(), tt.peer, nil, tt.xff...)
			if get.Code != tt.want || post.Code != tt.want {
				t.Fatalf("GET %d %q, POST %d %q; want %d", get.Code, get.Body, post.Code, post.Body, tt.want)
			}
			if tt.want == refused {
				if get.Body.String() != "source address not allowed\n" {
					t.Errorf("body %q", get.Body)
				}
				if post.Header().Get("Connection") != "close" {
					t.Errorf("a refused POST keeps its connection: %v", post.Header())
				}
			} else if get.Body.String() != "echo-4711" || post.Body.String() != "success" {
				t.Errorf("GET %q, POST %q; want echo-4711, success", get.Body, post.Body)
			}
		})
	}
}

// Only /wechat is gated: health checks, metrics and the push API answer
// an outsider as before (the proxy keeps /metrics and /api/v1 to the
// operator's network).
func TestAllowFromOnlyGatesTheCallback(t *testing.T) {
	env := newAccessEnv(t, func(c *Config) { c.AllowFrom = mustNetworks(t, "10.0.0.0/8") })
	const outsider = "198.51.100.7:5555"
	for path, want := range map[string]int{"/healthz": 200, "/metrics": 200, "/api/v1/messages/x": 401, "/nope": 404} {
		if w := env.from(http.MethodGet, path, outsider, nil); w.Code != want {
			t.Errorf("GET %s from outside: %d, want %d", path, w.Code, want)
		}
	}
	if w := env.from(http.MethodPut, "/wechat", outsider, nil); w.Code != http.StatusForbidden {
		t.Errorf("PUT /wechat from outside: %d, want 403", w.Code)
	}
}

// The allow-list sees the TCP peer of a real connection.
func TestAllowFromOverTCP(t *testing.T) {
	for allow, want := range map[string]int{"127.0.0.1": 200, "10.0.0.0/8": 403} {
		env := newAccessEnv(t, func(c *Config) { c.AllowFrom = mustNetworks(t, allow); c.Now = nil })
		srv := httptest.NewServer(env.e)
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/wechat?"+wechat.CallbackQuery(testToken, ts, "n", "", "").Encode()+"&echostr=e", nil)
		req.Header.Set(echo.HeaderXForwardedFor, "10.1.2.3") // not believed: no proxy trusted
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		srv.Close()
		if resp.StatusCode != want {
			t.Errorf("allow %s, from 127.0.0.1: %d, want %d", allow, resp.StatusCode, want)
		}
	}
}

// A flood of refused callbacks costs a counter each and a log line a
// minute: neither an "http request" line each nor a warning each.
func TestAllowFromRefusalsLoggedOnceAMinute(t *testing.T) {
	env := newAccessEnv(t, func(c *Config) { c.AllowFrom = mustNetworks(t, "10.0.0.0/8") })
	const n = 1000
	for i := range n {
		if w := env.from(http.MethodPost, "/wechat?signature=x", fmt.Sprintf("198.51.%d.%d:1", i/250, i%250), nil); w.Code != 403 {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
	if got := env.metric(t, `wxreply_callbacks_refused_total{reason="source"}`); got != n {
		t.Errorf("refused counter %v, want %d", got, n)
	}
	warned := env.log.lines(t, "callback refused")
	if len(warned) != 1 || warned[0]["level"] != "WARN" || warned[0]["client"] != "198.51.0.0" {
		t.Fatalf("%d warnings, want 1 naming the first client: %v", len(warned), warned)
	}
	if reqs := env.log.lines(t, "http request"); len(reqs) != 1 { // the /metrics scrape
		t.Errorf("%d request log lines, want only the scrape's", len(reqs))
	}
	env.clock.advance(time.Minute)
	env.from(http.MethodGet, "/wechat", "198.51.100.7:1", nil)
	warned = env.log.lines(t, "callback refused")
	if len(warned) != 2 || warned[1]["refused_without_a_line"] != float64(n-1) {
		t.Fatalf("after a minute: %v, want a second line counting the %d not logged", warned, n-1)
	}
}

// The request log's remote_ip is the client the allow-list sees, not what
// a client wrote into X-Forwarded-For.
func TestRemoteIPBehindProxies(t *testing.T) {
	env := newAccessEnv(t, func(c *Config) { c.TrustedProxies = mustNetworks(t, "192.0.2.0/24") })
	env.from(http.MethodGet, "/healthz", "192.0.2.10:1", nil, "198.51.100.1, 203.0.113.9")
	env.from(http.MethodGet, "/healthz", "198.51.100.7:1", nil, "10.1.2.3")
	var got []any
	for _, l := range env.log.lines(t, "http request") {
		got = append(got, l["remote_ip"])
	}
	if fmt.Sprint(got) != "[203.0.113.9 198.51.100.7]" {
		t.Errorf("remote_ip %v, want [203.0.113.9 198.51.100.7]", got)
	}
}

// apiGet is GET /api/v1/messages/x from peer, with the API key when
// authorized.
func (env *accessEnv) apiGet(peer string, authorized bool, xff ...string) *httptest.ResponseRecorder {
	h := http.Header{}
	if authorized {
		h.Set("Authorization", "Bearer "+testAPIKey)
	}
	return env.from(http.MethodGet, "/api/v1/messages/x", peer, h, xff...)
}

func TestAPIRateLimit(t *testing.T) {
	env := newAccessEnv(t, func(c *Config) { c.APIRate = 1 }) // bursts of 2
	const a, b = "198.51.100.7:1", "198.51.100.8:1"
	// The limit comes before the key: failed attempts count (in a limit
	// of their own, apart from the key's holders).
	for i, want := range []int{401, 401, 429, 429} {
		w := env.apiGet(a, false)
		if w.Code != want {
			t.Fatalf("request %d: %d %s, want %d", i, w.Code, w.Body, want)
		}
		if want != 429 {
			continue
		}
		var body apiError
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || !strings.Contains(body.Error, "WXREPLY_API_RATE") ||
			!strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
			t.Errorf("429 body %q (%v), content type %q; want the API's JSON error", w.Body, err, w.Header().Get("Content-Type"))
		}
		if got := w.Header().Get("Retry-After"); got != "1" {
			t.Errorf("Retry-After %q, want 1", got)
		}
	}
	if w := env.apiGet(b, true); w.Code != 404 {
		t.Errorf("another client: %d, want 404", w.Code)
	}
	if w := env.from(http.MethodGet, "/healthz", a, nil); w.Code != 200 {
		t.Errorf("/healthz of a limited client: %d", w.Code)
	}
	// The same client with the key has its own burst of 2.
	for i, want := range []int{404, 404, 429} {
		if w := env.apiGet(a, true); w.Code != want {
			t.Errorf("with the key, request %d: %d, want %d", i, w.Code, want)
		}
	}
	if got := env.metric(t, "wxreply_api_requests_limited_total"); got != 3 {
		t.Errorf("limited counter %v, want 3", got)
	}
	if warned := env.log.lines(t, "push API request refused"); len(warned) != 1 {
		t.Errorf("%d warnings, want 1 a minute", len(warned))
	}
}

// Retry-After is when a token is back, in whole seconds rounded up.
func TestAPIRateRetryAfter(t *testing.T) {
	env := newAccessEnv(t, func(c *Config) { c.APIRate = 0.1 }) // a token every 10 s, bursts of 1
	const peer = "198.51.100.7:1"
	steps := []struct {
		wait       time.Duration
		code       int
		retryAfter string
	}{{0, 404, ""}, {0, 429, "10"}, {2500 * time.Millisecond, 429, "8"}, {6500 * time.Millisecond, 429, "1"}, {time.Second, 404, ""}}
	for i, s := range steps {
		env.clock.advance(s.wait)
		w := env.apiGet(peer, true)
		if w.Code != s.code || w.Header().Get("Retry-After") != s.retryAfter {
			t.Fatalf("step %d: %d, Retry-After %q; want %d, %q", i, w.Code, w.Header().Get("Retry-After"), s.code, s.retryAfter)
		}
	}
}

func TestAPIRateClients(t *testing.T) {
	tests := []struct {
		name     string
		trusted  string
		first    []string // peer, then X-Forwarded-For lines
		second   []string
		separate bool
	}{
		{"X-Forwarded-For of an untrusted peer is ignored", "",
			[]string{"198.51.100.7:1", "10.0.0.1"}, []string{"198.51.100.7:2", "10.0.0.2"}, false},
		{"clients behind a trusted proxy", "192.0.2.0/24",
			[]string{"192.0.2.10:1", "10.0.0.1"}, []string{"192.0.2.10:2", "10.0.0.2"}, true},
		{"spoofed entries left of the client", "192.0.2.0/24",
			[]string{"192.0.2.10:1", "10.0.0.1, 198.51.100.7"}, []string{"192.0.2.10:2", "10.0.0.2, 198.51.100.7"}, false},
		{"one IPv6 /64", "", []string{"[2001:db8:0:1::1]:1"}, []string{"[2001:db8:0:1:ffff::2]:1"}, false},
		{"two IPv6 /64s", "", []string{"[2001:db8:0:1::1]:1"}, []string{"[2001:db8:0:2::1]:1"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newAccessEnv(t, func(c *Config) { c.APIRate = 1; c.TrustedProxies = mustNetworks(t, tt.trusted) })
			for range 2 {
				if w := env.apiGet(tt.first[0], true, tt.first[1:]...); w.Code != 404 {
					t.Fatalf("first client's burst: %d", w.Code)
				}
			}
			want := 429
			if tt.separate {
				want = 404
			}
			if w := env.apiGet(tt.second[0], true, tt.second[1:]...); w.Code != want {
				t.Errorf("second client: %d, want %d", w.Code, want)
			}
		})
	}
}

func TestAPIRateOff(t *testing.T) {
	env := newAccessEnv(t, func(c *Config) { c.APIRate = 0 })
	for i := range 500 {
		if w := env.apiGet("198.51.100.7:1", true); w.Code != 404 {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
}

// However many client addresses an attacker invents, the limiter keeps at
// most maxAPIClients, and the rest share one limit; idle ones are
// dropped.
func TestAPIRateMemoryBounded(t *testing.T) {
	env := newAccessEnv(t, func(c *Config) { c.APIRate = 1; c.TrustedProxies = mustNetworks(t, "192.0.2.1") })
	const clients, workers = 50_000, 8
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var limited atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < clients; i += workers {
				xff := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
				if env.apiGet("192.0.2.1:1", false, xff).Code == 429 {
					limited.Add(1)
				}
			}
		})
	}
	wg.Wait()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := env.metric(t, "wxreply_api_clients_tracked"); n != maxAPIClients {
		t.Errorf("%v clients tracked, want the cap %d", n, maxAPIClients)
	}
	// Those beyond the cap share one limiter's burst of 2.
	if got, want := limited.Load(), int64(clients-maxAPIClients-2); got < want {
		t.Errorf("%d requests limited, want at least %d", got, want)
	}
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 32<<20 {
		t.Errorf("the heap grew by %d MiB for %d clients", grown>>20, clients)
	}
	// A minute later the idle clients are dropped at the next new one of
	// their kind (these came without the key).
	env.clock.advance(apiClientIdle)
	if w := env.apiGet("198.51.100.7:1", false); w.Code != 401 {
		t.Errorf("a new client after the flood: %d, want 401 (through the limit, refused for the key)", w.Code)
	}
	if n := env.metric(t, "wxreply_api_clients_tracked"); n != 1 {
		t.Errorf("%v clients tracked after a minute, want 1", n)
	}
}

// A flood without the API key, from addresses it invents, fills its own
// table and drains its own overflow limit: a new client that holds the
// key is still let through.
func TestAPIRateFloodWithoutKeyLocksNoOneOut(t *testing.T) {
	env := newAccessEnv(t, func(c *Config) { c.APIRate = 1; c.TrustedProxies = mustNetworks(t, "192.0.2.1") })
	for i := range maxAPIClients + 50 {
		xff := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
		env.apiGet("192.0.2.1:1", false, xff)
	}
	if w := env.apiGet("192.0.2.1:1", false, "172.16.0.9"); w.Code != 429 {
		t.Fatalf("a new client without the key after the flood: %d, want 429 (the shared overflow limit is spent)", w.Code)
	}
	if w := env.apiGet("192.0.2.1:1", true, "172.16.0.10"); w.Code != 404 {
		t.Errorf("a new client with the key after the flood: %d, want 404 (let through to an unknown id)", w.Code)
	}
}
