package delivery_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// Helpers of the engine's tests: a fake API and a store per test, a
// client and an engine pointed at them, a clock the test moves, results
// and a log that can be searched, and waits on conditions with a deadline.

// waitLimit bounds every wait of these tests; a loaded -race run on a
// small machine stays well inside it.
const waitLimit = 30 * time.Second

func fakeAPI(t testing.TB, opts ...wechattest.Option) *wechattest.Server {
	t.Helper()
	srv := wechattest.NewServer(opts...)
	t.Cleanup(srv.Close)
	return srv
}

func apiClient(t testing.TB, srv *wechattest.Server, log *slog.Logger, mod func(*wechat.ClientOptions)) *wechat.Client {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := wechat.ClientOptions{BaseURL: srv.URL, AppID: srv.AppID, AppSecret: srv.AppSecret, Logger: log}
	if mod != nil {
		mod(&o)
	}
	c := wechat.NewClient(o)
	t.Cleanup(c.Close)
	return c
}

// memStore is an in-memory store, closed when the test ends (after the
// engines started later, whose cleanups run first).
func memStore(t testing.TB) store.Store {
	t.Helper()
	st, err := store.OpenSQLite(store.SQLiteOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// dirStore opens the durable store in dir. The caller closes it.
func dirStore(t testing.TB, dir string) *store.SQLite {
	t.Helper()
	st, err := store.OpenSQLite(store.SQLiteOptions{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// clock is a clock the test moves by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

// newClock starts at the real time (to the millisecond, as the store
// keeps it), so that the store's own pruning, on the real clock, leaves
// what the engine records alone.
func newClock() *clock { return &clock{now: time.Now().Truncate(time.Millisecond)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// logSink is a concurrency-safe JSON log that tests read back.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// lines returns the decoded log lines whose msg is msg.
func (l *logSink) lines(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func newLog() (*logSink, *slog.Logger) {
	sink := &logSink{}
	return sink, slog.New(slog.NewJSONHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// results collects OnResult calls, from any number of engines.
type results struct {
	mu   sync.Mutex
	byID map[string][]delivery.Result
	n    int
	more chan struct{}
}

func newResults() *results {
	return &results{byID: make(map[string][]delivery.Result), more: make(chan struct{})}
}

func (r *results) add(res delivery.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byID[res.ID] = append(r.byID[res.ID], res)
	r.n++
	close(r.more)
	r.more = make(chan struct{})
}

// wait blocks until n results arrived in all.
func (r *results) wait(t testing.TB, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for {
		r.mu.Lock()
		got, ch := r.n, r.more
		r.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("waited for %d results, got %d", n, got)
		}
	}
}

func (r *results) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *results) get(id string) []delivery.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery.Result(nil), r.byID[id]...)
}

func (r *results) all() map[string][]delivery.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]delivery.Result, len(r.byID))
	for id, rs := range r.byID {
		out[id] = append([]delivery.Result(nil), rs...)
	}
	return out
}

// newEngine makes an engine with fast retries and a quick poll, on a new
// in-memory store unless o names one, reporting to res (a new one when
// nil). It is shut down when the test ends; it is not started.
func newEngine(t testing.TB, o delivery.Options, res *results) (*delivery.Engine, *results) {
	t.Helper()
	if res == nil {
		res = newResults()
	}
	o.OnResult = res.add
	if o.Store == nil {
		o.Store = memStore(t)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.BaseBackoff == 0 {
		o.BaseBackoff = time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 5 * time.Millisecond
	}
	if o.PollEvery == 0 {
		o.PollEvery = 5 * time.Millisecond
	}
	e := delivery.New(o)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
	})
	return e, res
}

// startEngine is newEngine, started.
func startEngine(t testing.TB, o delivery.Options) (*delivery.Engine, *results) {
	t.Helper()
	e, res := newEngine(t, o, nil)
	e.Start()
	return e, res
}

// accept records items, one request, and returns their IDs.
func accept(t testing.TB, e *delivery.Engine, items ...wechat.Outgoing) []string {
	t.Helper()
	a, err := e.Accept(context.Background(), delivery.Request{Items: items})
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if len(a.IDs) != len(items) {
		t.Fatalf("Accept gave %d ids for %d items", len(a.IDs), len(items))
	}
	return a.IDs
}

// touch records an interaction of openid, as a callback does.
func touch(t testing.TB, e *delivery.Engine, openid string) {
	t.Helper()
	if _, err := e.Accept(context.Background(), delivery.Request{Touch: openid}); err != nil {
		t.Fatalf("Accept touch: %v", err)
	}
}

func status(t testing.TB, e *delivery.Engine, id string) store.Status {
	t.Helper()
	st, ok, err := e.Status(context.Background(), id)
	if err != nil || !ok {
		t.Fatalf("Status(%s) = %+v, %v, %v", id, st, ok, err)
	}
	return st
}

// waitFor checks cond until it holds, or fails the test at the deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // a poll interval, not a synchronisation
	}
}

// driveRetries moves clk on by step each time item id is parked for a
// retry (queued, due later than now), until it has n results in res.
// With MaxBackoff at most step, every retry is then due on the step.
func driveRetries(t testing.TB, e *delivery.Engine, clk *clock, res *results, id string, step time.Duration) {
	t.Helper()
	waitFor(t, "the item to end", func() bool {
		if len(res.get(id)) > 0 {
			return true
		}
		st, ok, err := e.Status(context.Background(), id)
		if err == nil && ok && st.State == store.StateQueued && st.NextAt.After(clk.Now()) {
			clk.Advance(step)
		}
		return false
	})
}

func textTo(openid, content string) *wechat.CustomMessage {
	return &wechat.CustomMessage{ToUser: openid, MsgType: wechat.MsgTypeText, Text: &wechat.Text{Content: content}}
}

func textOut(openid, content string) wechat.Outgoing {
	return wechat.Outgoing{Rule: "test-rule", InMsgID: "in-" + content, Custom: textTo(openid, content)}
}

func templateOut(openid string) wechat.Outgoing {
	return wechat.Outgoing{Rule: "order-shipped", InMsgID: "in-1",
		Template: &wechat.TemplateMessage{ToUser: openid, TemplateID: "TPL1", Data: map[string]wechat.TemplateValue{"k": {Value: "v"}}}}
}

// texts returns the contents of the accepted text messages to openid.
func texts(srv *wechattest.Server, openid string) []string {
	var out []string
	for _, r := range srv.Accepted(wechat.PathCustomSend) {
		if r.OpenID == openid && r.Custom.Text != nil {
			out = append(out, r.Custom.Text.Content)
		}
	}
	return out
}

func count(srv *wechattest.Server, api string) int {
	n := 0
	for _, r := range srv.Received() {
		if r.API == api {
			n++
		}
	}
	return n
}

// abandoned counts the calls the fake saw their client give up on.
func abandoned(srv *wechattest.Server) int {
	n := 0
	for _, r := range srv.Received() {
		if r.Abandoned {
			n++
		}
	}
	return n
}

// seq returns "0".."n-1".
func seq(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint(i)
	}
	return out
}

// countingStore counts the engine's claims: each is the dispatcher
// looking for due work.
type countingStore struct {
	store.Store
	claims atomic.Int64
}

func (s *countingStore) Claim(ctx context.Context, now time.Time, max int, lease time.Duration) ([]store.Claim, time.Time, error) {
	s.claims.Add(1)
	return s.Store.Claim(ctx, now, max, lease)
}
