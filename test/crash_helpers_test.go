package test

import (
	"context"
	"errors"
	"fmt"
	"io"
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

	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// Helpers of the tests that crash, stop and restart the real binary: a
// fake API at WeChat's latency behind a proxy that can go down, a stream
// of callbacks that retries like WeChat, and the checks on what the fake
// received.

// echoRules answers every text "m-…" with "r m-…", so that each reply
// names the message it answers.
const echoRules = `rules:
  - name: echo
    match:
      text:
        prefix: ["m-"]
    reply:
      - text: "r {{.Content}}"
`

func writeEchoRules(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(echoRules), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// fakeWeChat is the fake API at 30 ms a call, the real API's latency,
// reached through a proxy that a test can take down.
type fakeWeChat struct {
	api   *wechattest.Server
	proxy *proxy
}

func newFakeWeChat(t *testing.T, latency time.Duration) *fakeWeChat {
	t.Helper()
	api := wechattest.NewServer(wechattest.WithCredentials(testAppID, testAppSecret))
	t.Cleanup(api.Close)
	api.SetLatency(wechat.PathCustomSend, latency)
	p := newProxy(t, strings.TrimPrefix(api.URL, "http://"))
	return &fakeWeChat{api: api, proxy: p}
}

// env is the environment of a wxreply that sends to this fake, keeps its
// store in dir and answers with rules.
func (f *fakeWeChat) env(dir, rules string, more ...string) []string {
	return append([]string{
		"WECHAT_TOKEN=" + testToken, "WECHAT_APPID=" + testAppID, "WECHAT_APPSECRET=" + testAppSecret,
		"WECHAT_API_BASE=http://" + f.proxy.addr, "WXREPLY_RULES=" + rules, "WXREPLY_STORE=" + dir,
		"WXREPLY_LOG_LEVEL=warn",
	}, more...)
}

// replies returns, per reply text, how many times the fake accepted it,
// and per user the texts in the order accepted.
func (f *fakeWeChat) replies() (count map[string]int, byUser map[string][]string) {
	count, byUser = map[string]int{}, map[string][]string{}
	for _, r := range f.api.Accepted(wechat.PathCustomSend) {
		if r.Custom == nil || r.Custom.Text == nil {
			continue
		}
		c := r.Custom.Text.Content
		count[c]++
		byUser[r.OpenID] = append(byUser[r.OpenID], c)
	}
	return count, byUser
}

// waitReplies waits until every text in want was accepted at least once.
func (f *fakeWeChat) waitReplies(t *testing.T, want []string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		count, _ := f.replies()
		missing := 0
		var first string
		for _, w := range want {
			if count[w] == 0 {
				if missing == 0 {
					first = w
				}
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged replies never delivered (first: %q) after %v", missing, len(want), first, within)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_ = f.api.WaitReceived(ctx, len(f.api.Received())+1)
		cancel()
	}
}

// proxy forwards TCP connections to target until it is taken down: then
// it refuses connections and cuts the open ones, as an unreachable
// WeChat does.
type proxy struct {
	t      *testing.T
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, addr: ln.Addr().String(), target: target, conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(p.Down)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
}

func (p *proxy) pipe(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// Down refuses new connections and cuts the open ones.
func (p *proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// Up listens again on the same address.
func (p *proxy) Up() {
	p.t.Helper()
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		if ln, err = net.Listen("tcp", p.addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the port is being released
	}
	if err != nil {
		p.t.Fatalf("proxy cannot listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// stream posts text callbacks from users to the server at base, each
// message "m-USER-SEQ", and retries one that was not answered 200 the
// way WeChat does, with the same MsgId and a new signature. It keeps the
// replies that were acknowledged.
type stream struct {
	users  int
	base   atomic.Pointer[string]
	client *http.Client

	mu    sync.Mutex
	acked map[string]ackTimes // reply text → when its message was first sent and acknowledged
	seq   []int64             // per user: the next sequence number
	sent  map[string]time.Time
	retry []pendingMsg
	codes map[int]int // every HTTP status answered, for the checks
}

// ackTimes say when a message was first sent and when it was answered
// 200: a message acknowledged before another was first sent was recorded
// first, so its reply must go first.
type ackTimes struct{ sent, acked time.Time }

type pendingMsg struct {
	user  int
	seq   int64
	tries int
}

func newStream(users int, base string) *stream {
	s := &stream{users: users, acked: map[string]ackTimes{}, seq: make([]int64, users), codes: map[int]int{},
		sent:   map[string]time.Time{},
		client: &http.Client{Timeout: 6 * time.Second}}
	s.setBase(base)
	return s
}

func (s *stream) setBase(b string) { s.base.Store(&b) }

func streamOpenID(user int) string { return fmt.Sprintf("oSTREAM_user_%04d", user) }

func streamContent(user int, seq int64) string { return fmt.Sprintf("m-%04d-%06d", user, seq) }

func streamMsgID(user int, seq int64) int64 { return 9_000_000_000 + int64(user)*1_000_000 + seq }

// run posts at about rate a second until ctx ends.
func (s *stream) run(ctx context.Context, rate int) {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	next := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		var m pendingMsg
		if len(s.retry) > 0 && next%4 == 0 {
			m = s.retry[0]
			s.retry = s.retry[1:]
		} else {
			u := next % s.users
			m = pendingMsg{user: u, seq: s.seq[u]}
			s.seq[u]++
		}
		next++
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.post(m)
		}()
	}
}

// flush retries, until ctx ends, every message not yet acknowledged that
// WeChat would still retry.
func (s *stream) flush(ctx context.Context) {
	for ctx.Err() == nil {
		s.mu.Lock()
		if len(s.retry) == 0 {
			s.mu.Unlock()
			return
		}
		m := s.retry[0]
		s.retry = s.retry[1:]
		s.mu.Unlock()
		s.post(m)
	}
}

func (s *stream) post(m pendingMsg) {
	reply := "r " + streamContent(m.user, m.seq)
	s.mu.Lock()
	if _, ok := s.sent[reply]; !ok {
		s.sent[reply] = time.Now()
	}
	s.mu.Unlock()
	body := text(streamOpenID(m.user), streamContent(m.user, m.seq), streamMsgID(m.user, m.seq))
	code, err := s.send(body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		s.codes[code]++
	}
	if err == nil && code == http.StatusOK {
		if _, ok := s.acked[reply]; !ok {
			s.acked[reply] = ackTimes{sent: s.sent[reply], acked: time.Now()}
		}
		return
	}
	// WeChat tries a message four times in all.
	if m.tries++; m.tries < 4 {
		s.retry = append(s.retry, m)
	}
}

func (s *stream) send(body []byte) (int, error) {
	msg, err := wechat.ParseMessage(body)
	if err != nil {
		return 0, err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	nonce := strconv.FormatInt(callbackNonce.Add(1), 10)
	q := wechat.CallbackQuery(testToken, ts, nonce, msg.FromUserName, msg.Encrypt)
	resp, err := s.client.Post(*s.base.Load()+"/wechat?"+q.Encode(), "text/xml", strings.NewReader(string(body)))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// ackedReplies returns the replies of every acknowledged message.
func (s *stream) ackedReplies() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.acked))
	for r := range s.acked {
		out = append(out, r)
	}
	return out
}

// checkAckOrder fails t when a user's replies went backwards: a message
// acknowledged before another was first sent must be answered first.
// (Messages posted at the same time may be recorded in either order, and
// a message retried after a crash is recorded when the retry arrives.)
// Repeats, the duplicates of calls cut off by a crash, are not steps back.
func (s *stream) checkAckOrder(t *testing.T, byUser map[string][]string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for user, texts := range byUser {
		seen := map[string]bool{}
		var order []string // first deliveries
		for _, txt := range texts {
			if !seen[txt] {
				seen[txt] = true
				order = append(order, txt)
			}
		}
		for j, b := range order {
			tb, ok := s.acked[b]
			if !ok {
				continue
			}
			for _, a := range order[j+1:] {
				if ta, ok := s.acked[a]; ok && ta.acked.Before(tb.sent) {
					t.Errorf("%s: %q was acknowledged before %q was sent, but answered after it", user, a, b)
					return
				}
			}
		}
	}
}

// checkOrder fails t when a user's replies went backwards: each user's
// sequence numbers, in the order the fake accepted them, never decrease
// (a repeat of the last one, the duplicate of a call cut off by a crash,
// is not a step back). It holds where each user's messages are posted
// one after the other.
func checkOrder(t *testing.T, byUser map[string][]string) {
	t.Helper()
	for user, texts := range byUser {
		last := ""
		for _, txt := range texts {
			if txt < last {
				t.Errorf("%s: reply %q after %q: order went backwards (all: %v)", user, txt, last, texts)
				break
			}
			last = txt
		}
	}
}

// getStatus returns the HTTP status of GET u.
func getStatus(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) {
			return 0
		}
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}
