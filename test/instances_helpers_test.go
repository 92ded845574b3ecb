package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxreply/wxreply/store/storetest"
	"github.com/wxreply/wxreply/wechat"
)

// Helpers of the tests that run two wxreply processes on one Redis: the
// store URL with a prefix of the test's own, the pair of processes, the
// push API, and a round-robin load balancer in front of the pair.

// instanceRules answers every text "m-…" with "r m-…" (as echoRules), a
// text "p-…" with the passive reply "p p-…", and a follow with a greeting
// that names the user and the event's CreateTime, so that each reply
// names what it answers.
const instanceRules = echoRules + `  - name: welcome
    match:
      event: subscribe
    reply:
      - text: "welcome {{.FromUserName}} {{.CreateTime}}"
  - name: passive
    match:
      text:
        prefix: ["p-"]
    passive: true
    reply:
      - text: "p {{.Content}}"
`

func writeInstanceRules(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(instanceRules), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// redisStore is the WXREPLY_STORE of a Redis at base (a redis:// URL)
// with a key prefix of the test's own, deleted when the test ends.
func redisStore(t *testing.T, base string) string {
	t.Helper()
	prefix := storetest.RedisPrefix(t)
	storetest.CleanupRedisPrefix(t, base, prefix)
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "prefix=" + url.QueryEscape(prefix)
}

// startPair starts two wxreply processes on the same store (a redis://
// URL), each on its own port, sending to wx, and waits until both are
// healthy.
func startPair(t *testing.T, wx *fakeWeChat, storeURL, rules string, more ...string) [2]*process {
	t.Helper()
	var ps [2]*process
	for i := range ps {
		ps[i] = startWxreply(t, wx.env(storeURL, rules, more...))
	}
	return ps
}

// signedCallbackURL is the signed /wechat URL of body at base, as WeChat would:
// a fresh timestamp and nonce each time.
func signedCallbackURL(base string, body []byte) (string, error) {
	m, err := wechat.ParseMessage(body)
	if err != nil {
		return "", err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	nonce := strconv.FormatInt(callbackNonce.Add(1), 10)
	q := wechat.CallbackQuery(testToken, ts, nonce, m.FromUserName, m.Encrypt)
	return base + "/wechat?" + q.Encode(), nil
}

// tryCallback is postCallback for other goroutines than the test's: it
// returns the error instead of failing the test.
func tryCallback(base string, body []byte) (int, string, error) {
	u, err := signedCallbackURL(base, body)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.Post(u, "text/xml", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out), err
}

// event builds a plaintext event from openid at createTime.
func event(openid, name string, createTime int64) []byte {
	return []byte("<xml><ToUserName><![CDATA[gh_test0000001]]></ToUserName><FromUserName><![CDATA[" + openid +
		"]]></FromUserName><CreateTime>" + strconv.FormatInt(createTime, 10) +
		"</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[" + name + "]]></Event></xml>")
}

// concurrently runs each of fns at once, released together, and waits
// for them all.
func concurrently(fns ...func()) {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	for _, f := range fns {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			f()
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
}

// pushAnswer is the push API's answer: the status, the body's id and
// status, and the body as it came.
type pushAnswer struct {
	Code   int
	ID     string
	Status string
	Body   string
	Err    error
}

// push POSTs body to base's /api/v1/messages with the test's API key and,
// unless empty, an Idempotency-Key. It is safe from any goroutine.
func push(base, idemKey, body string) pushAnswer {
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/messages", strings.NewReader(body))
	if err != nil {
		return pushAnswer{Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	req.Header.Set("Content-Type", "application/json")
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	return doPushRequest(req)
}

// pushStatusOf GETs /api/v1/messages/{id} at base.
func pushStatusOf(base, id string) pushAnswer {
	req, err := http.NewRequest(http.MethodGet, base+"/api/v1/messages/"+id, nil)
	if err != nil {
		return pushAnswer{Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	return doPushRequest(req)
}

func doPushRequest(req *http.Request) pushAnswer {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return pushAnswer{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	a := pushAnswer{Code: resp.StatusCode, Body: string(b), Err: err}
	var v struct{ ID, Status string }
	if json.Unmarshal(b, &v) == nil {
		a.ID, a.Status = v.ID, v.Status
	}
	return a
}

// waitStatus waits until GET /api/v1/messages/{id} at base answers 200
// with status want.
func waitStatus(t *testing.T, base, id, want string) {
	t.Helper()
	var last pushAnswer
	waitFor(t, 15*time.Second, func() bool {
		last = pushStatusOf(base, id)
		return last.Err == nil && last.Code == http.StatusOK && last.Status == want
	}, func() string {
		return fmt.Sprintf("status of %s at %s: %d %s (%v), want %s", id, base, last.Code, last.Body, last.Err, want)
	})
}

// acceptedFor returns the texts of the customer-service messages the
// fake accepted for openid, in the order accepted.
func (f *fakeWeChat) acceptedFor(openid string) []string {
	_, byUser := f.replies()
	return byUser[openid]
}

// callsFor counts the customer-service calls the fake received for
// openid, accepted or not.
func (f *fakeWeChat) callsFor(openid string) int {
	n := 0
	for _, r := range f.api.Received() {
		if r.API == wechat.PathCustomSend && r.OpenID == openid {
			n++
		}
	}
	return n
}

// waitText waits until the fake accepted the text txt for openid at
// least once.
func (f *fakeWeChat) waitText(t *testing.T, openid, txt string) {
	t.Helper()
	waitFor(t, 15*time.Second, func() bool {
		for _, got := range f.acceptedFor(openid) {
			if got == txt {
				return true
			}
		}
		return false
	}, func() string {
		return fmt.Sprintf("%q never delivered to %s; delivered: %q", txt, openid, f.acceptedFor(openid))
	})
}

// balancer is a round-robin load balancer in front of wxreply
// instances, as a real one would send WeChat's callbacks: each request
// to the next instance in service. Down takes one out of service, as a
// health check would once it stopped answering; a request it was
// already sent to, or is sent to before then, fails with 502.
type balancer struct {
	url      string
	backends []*url.URL
	mu       sync.Mutex
	up       []bool
	next     atomic.Uint64
	served   []atomic.Int64 // requests forwarded, per backend
}

func newBalancer(t *testing.T, bases ...string) *balancer {
	t.Helper()
	b := &balancer{up: make([]bool, len(bases)), served: make([]atomic.Int64, len(bases))}
	for i, s := range bases {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		b.backends = append(b.backends, u)
		b.up[i] = true
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			i := b.pick()
			b.served[i].Add(1)
			r.SetURL(b.backends[i])
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "bad gateway: "+err.Error(), http.StatusBadGateway)
		},
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	b.url = srv.URL
	return b
}

func (b *balancer) pick() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.backends)
	start := int(b.next.Add(1) % uint64(n))
	for k := range n {
		if i := (start + k) % n; b.up[i] {
			return i
		}
	}
	return start // none in service: the request fails
}

// Down takes backend i out of service.
func (b *balancer) Down(i int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.up[i] = false
}

// healthCode is the status of GET base/healthz, 0 when it cannot be
// reached.
func healthCode(base string) int {
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// streamCodes is a copy of the HTTP statuses the stream was answered.
func streamCodes(s *stream) map[int]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int]int, len(s.codes))
	for k, v := range s.codes {
		out[k] = v
	}
	return out
}

// sentBy returns how many replies each instance delivered
// (wxreply_replies_delivered_total), once they add up to at least total:
// an instance counts a reply after it recorded WeChat's answer, a moment
// after the fake accepted it.
func sentBy(t *testing.T, ps [2]*process, total float64) [2]float64 {
	t.Helper()
	var sent [2]float64
	waitFor(t, 10*time.Second, func() bool {
		for i, p := range ps {
			sent[i] = metricSum(t, p.base, "wxreply_replies_delivered_total")
		}
		return sent[0]+sent[1] >= total
	}, func() string {
		return fmt.Sprintf("the instances counted %v and %v replies delivered, want %v in all", sent[0], sent[1], total)
	})
	return sent
}
