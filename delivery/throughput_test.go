package delivery_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
)

// The contract's "Keeps up with WeChat": at WeChat's 30 ms a call, an
// engine with the default options on a directory store sends at least
// 1,000 messages a second.
const (
	apiLatency     = 30 * time.Millisecond
	minSendsPerSec = 1000
)

// throughputRig is an engine with the default options on a directory
// store, in front of a fake API answering in apiLatency.
type throughputRig struct {
	e         *delivery.Engine
	st        *store.SQLite
	delivered atomic.Int64
	failed    atomic.Int64
	mu        sync.Mutex
	want      int64
	done      chan struct{}
	last      time.Time
}

func newThroughputRig(tb testing.TB) *throughputRig {
	tb.Helper()
	srv := fakeAPI(tb)
	srv.SetLatency(wechat.PathCustomSend, apiLatency)
	c := apiClient(tb, srv, nil, nil)
	// The token fetch stays outside the timing.
	if _, err := c.Token(context.Background()); err != nil {
		tb.Fatal(err)
	}
	r := &throughputRig{st: dirStore(tb, tb.TempDir())}
	r.e = delivery.New(delivery.Options{Store: r.st, Client: c, Logger: slog.New(slog.DiscardHandler), OnResult: r.result})
	r.e.Start()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = r.e.Shutdown(ctx)
		_ = r.st.Close()
	})
	return r
}

func (r *throughputRig) result(res delivery.Result) {
	if !res.Delivered {
		r.failed.Add(1)
	}
	n := r.delivered.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if n == r.want {
		r.last = time.Now()
		close(r.done)
	}
}

// run accepts n messages to n users (round names them apart), one per
// request from 32 callers at once as callbacks arrive, and returns the
// wall time from the first Accept to the last delivery.
func (r *throughputRig) run(tb testing.TB, round, n int) time.Duration {
	tb.Helper()
	r.mu.Lock()
	r.want = r.delivered.Load() + int64(n)
	r.done = make(chan struct{})
	done := r.done
	r.mu.Unlock()
	const callers = 32
	start := time.Now()
	var wg sync.WaitGroup
	for p := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < n; i += callers {
				out := wechat.Outgoing{Rule: "bench", Custom: textTo(fmt.Sprintf("r%d-user-%05d", round, i), "你好 <a href=\"https://example.com/?a=1&b=2\">link</a>")}
				if _, err := r.e.Accept(context.Background(), delivery.Request{Touch: out.Custom.ToUser, Items: []wechat.Outgoing{out}}); err != nil {
					tb.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		tb.Fatalf("%d of %d delivered in 2 minutes", r.delivered.Load()-(r.want-int64(n)), n)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last.Sub(start)
}

func TestThroughputAt30ms(t *testing.T) {
	if testing.Short() {
		t.Skip("takes seconds; skipped under -short")
	}
	if raceEnabled {
		t.Skip("the race detector slows sends several times over; run without -race")
	}
	// Up to three rounds of 3,000 fresh users, each timed on its own: a
	// machine busy with other packages' tests may slow one; the engine
	// keeps up if one round does.
	const n, rounds = 3000, 3
	r := newThroughputRig(t)
	best := 0.0
	for round := range rounds {
		took := r.run(t, round, n)
		rate := float64(n) / took.Seconds()
		s := r.st.Stats()
		t.Logf("round %d: %d messages in %v: %.0f sends/s; store so far: %d commits of %.1f ops on average",
			round, n, took.Round(time.Millisecond), rate, s.Commits, float64(s.Ops)/float64(max(s.Commits, 1)))
		best = max(best, rate)
		if best >= minSendsPerSec {
			break
		}
	}
	if f := r.failed.Load(); f != 0 {
		t.Errorf("%d failed", f)
	}
	if best < minSendsPerSec {
		t.Errorf("%.0f sends/s at best at %v a call, want at least %d", best, apiLatency, minSendsPerSec)
	}
}

// BenchmarkSendAt30ms is end to end on a directory store, with the
// engine's defaults: Accept (one message per request, 32 callers) →
// store → dispatcher → Client → loopback HTTP → the fake API answering in
// 30 ms, for 3,000 messages to 3,000 users per iteration, until every one
// is delivered.
func BenchmarkSendAt30ms(b *testing.B) {
	const n = 3000
	r := newThroughputRig(b)
	var took time.Duration
	round := 0
	for b.Loop() {
		took += r.run(b, round, n)
		round++
	}
	if f := r.failed.Load(); f != 0 {
		b.Errorf("%d failed", f)
	}
	b.ReportMetric(float64(n*round)/took.Seconds(), "sends/s")
	s := r.st.Stats()
	b.ReportMetric(float64(s.Ops)/float64(max(s.Commits, 1)), "ops/commit")
}
