package test

import (
	"context"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxreply/wxreply/store/storetest"
	"github.com/wxreply/wxreply/wechat"
)

// TestWrkStores compares the stores on the binary users run, in one run:
// callbacks a second (wrk, one thread, 32 connections, while WeChat holds
// every send so that only the callback path is on the two cores) and
// then sends a second (the backlog drained at WeChat's 30 ms a call) for
// the minimal handler, one instance on the embedded store, one on Redis,
// and two on one Redis, each of the two loaded by its own wrk with 16 of
// the 32 connections. Every acknowledged reply must be delivered, and no
// more than wrk's cut-off requests besides. It runs only when asked:
//
//	WXREPLY_WRK=1 go test ./test -run TestWrkStores -v
func TestWrkStores(t *testing.T) {
	script := requireWrk(t, "the stores")
	duration := envOr("WXREPLY_WRK_DURATION", "10s")
	rules, _ := filepath.Abs(filepath.Join("..", "rules.yaml"))
	// A Redis of its own, as an operator would run it: append-only file
	// on, fsync every second.
	redisSrv := storetest.StartRedis(t, storetest.RedisServerOptions{})
	var run atomic.Int64 // wrk runs at once for two instances
	wrk := func(base string, conns int) wrkResult {
		r, err := runWrk(t, script, base, conns, duration, int(run.Add(1))*1_000_000_000)
		if err != nil {
			t.Error(err)
		}
		return r
	}
	type figures struct {
		rps, sends float64
		p99        time.Duration
	}
	// measure loads the instances at bases together, then lets the fake
	// WeChat behind them go and times the drain.
	measure := func(name string, wx *fakeWeChat, bases ...string) figures {
		release := wx.api.Hold(wechat.PathCustomSend)
		results := make([]wrkResult, len(bases))
		var wg sync.WaitGroup
		for i, b := range bases {
			wg.Go(func() { results[i] = wrk(b, 32/len(bases)) })
		}
		wg.Wait()
		var f figures
		acked := 0
		for _, r := range results {
			f.rps += r.rps
			f.p99 = max(f.p99, r.p99)
			acked += r.requests - r.non2xx
			if r.non2xx != 0 {
				t.Errorf("%s: %d non-2xx answers", name, r.non2xx)
			}
		}
		start := time.Now()
		release()
		delivered := func() int { return len(wx.api.Accepted(wechat.PathCustomSend)) }
		for deadline := start.Add(5 * time.Minute); delivered() < acked; {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d acknowledged replies delivered after 5 minutes", name, delivered(), acked)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = wx.api.WaitReceived(ctx, len(wx.api.Received())+500)
			cancel()
		}
		f.sends = float64(delivered()) / time.Since(start).Seconds()
		// wrk's cut-off requests may have been recorded without their
		// answer being counted: at most one per connection. And a call
		// held for the whole run times out (10 s) about when the fake
		// lets it through: WeChat may have it and it is sent again, the
		// duplicate the outbox allows, at most one per call in flight
		// (128 an instance).
		if got := delivered(); got > acked+32+128*len(bases) {
			t.Errorf("%s: %d replies delivered for %d acknowledged callbacks", name, got, acked)
		}
		t.Logf("%-32s %8.0f callbacks/s  p99 %-8s  then %6.0f sends/s  (%d acknowledged)", name, f.rps, f.p99, f.sends, acked)
		return f
	}

	minimal := measureMinimal(t, wrk)
	wxDir := newFakeWeChat(t, apiLatency)
	dir := startQuiet(t, filepath.Join(t.TempDir(), "dir.log"), wxDir.env(filepath.Join(t.TempDir(), "data"), rules))
	fDir := measure("one instance, directory store", wxDir, dir)

	redisURL := func() string {
		return redisSrv.URL() + "?prefix=" + url.QueryEscape(storetest.RedisPrefix(t))
	}
	wxOne := newFakeWeChat(t, apiLatency)
	one := startQuiet(t, filepath.Join(t.TempDir(), "one.log"), wxOne.env(redisURL(), rules))
	fOne := measure("one instance, Redis", wxOne, one)

	wxTwo := newFakeWeChat(t, apiLatency)
	shared := redisURL()
	a := startQuiet(t, filepath.Join(t.TempDir(), "a.log"), wxTwo.env(shared, rules))
	b := startQuiet(t, filepath.Join(t.TempDir(), "b.log"), wxTwo.env(shared, rules))
	fTwo := measure("two instances, one Redis", wxTwo, a, b)

	minimal2 := measureMinimal(t, wrk)
	base := (minimal + minimal2) / 2
	t.Logf("minimal handler: %.0f and %.0f callbacks/s", minimal, minimal2)
	t.Logf("callbacks / minimal: directory %.2f, Redis %.2f, two on Redis %.2f", fDir.rps/base, fOne.rps/base, fTwo.rps/base)
	t.Logf("sends/s: directory %.0f, Redis %.0f, two on Redis %.0f", fDir.sends, fOne.sends, fTwo.sends)
}

// measureMinimal is the minimal handler's callbacks a second.
func measureMinimal(t *testing.T, wrk func(string, int) wrkResult) float64 {
	t.Helper()
	return wrk(startMinimal(t), 32).rps
}
