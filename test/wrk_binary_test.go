package test

import (
	"context"
	"encoding/xml"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// TestWrkBinary measures the binary users run: wrk (one thread, 32
// connections) posts signed "hi" callbacks with fresh MsgIds to a minimal
// handler process and to `wxreply serve` with its defaults (the directory
// store, INFO logs to a file, metrics on), alternating, in one run. The
// sample rules answer "hi" with one customer-service reply, which
// wxreply records in its store before answering and sends to a fake API
// that takes 30 ms a call, while the load runs. Afterwards every reply
// acknowledged must have been delivered, exactly once. It runs only when
// asked, since it takes minutes and needs wrk:
//
//	WXREPLY_WRK=1 go test ./test -run TestWrkBinary -v
func TestWrkBinary(t *testing.T) {
	if os.Getenv("WXREPLY_WRK") == "" {
		t.Skip("set WXREPLY_WRK=1 to run the wrk load test on the binary")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip("wrk is not installed (apt-get install wrk)")
	}
	duration := envOr("WXREPLY_WRK_DURATION", "10s")
	script := filepath.Join(t.TempDir(), "callback.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		t.Fatal(err)
	}
	wx := newFakeWeChat(t, apiLatency)
	minimal := startMinimal(t)
	rules, _ := filepath.Abs(filepath.Join("..", "rules.yaml"))
	logFile := filepath.Join(t.TempDir(), "wxreply.log")
	srv := startQuiet(t, logFile, append(wx.env(filepath.Join(t.TempDir(), "data"), rules), "WXREPLY_LOG_LEVEL=info"))

	delivered := func() int { return len(wx.api.Accepted(wechat.PathCustomSend)) }
	run := 0
	load := func(name, base string) wrkResult {
		run++
		r, err := runWrk(t, script, base, 32, duration, run*1_000_000_000) // each run its own MsgIds
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-28s %8.0f req/s  p50 %-8s p99 %-8s non-2xx %d", name, r.rps, r.p50, r.p99, r.non2xx)
		if r.non2xx != 0 {
			t.Errorf("%s: %d non-2xx answers", name, r.non2xx)
		}
		if p99 := r.p99; base == srv && p99 > 20*time.Millisecond {
			t.Errorf("%s: p99 %s, want under 20ms", name, p99)
		}
		return r
	}
	// drain waits until at least want replies were delivered and returns
	// the sends a second it took.
	drain := func(want int) float64 {
		start, before := time.Now(), delivered()
		for deadline := start.Add(5 * time.Minute); delivered() < want; {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d acknowledged replies delivered after 5 minutes", delivered(), want)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = wx.api.WaitReceived(ctx, len(wx.api.Received())+500)
			cancel()
		}
		took := time.Since(start)
		return float64(delivered()-before) / took.Seconds()
	}

	// 1. The callback path alone: WeChat holds every send, so that the
	// fake's work (WeChat's, in production) and the sending are not on
	// these two cores; the replies wait in the store.
	release := wx.api.Hold(wechat.PathCustomSend)
	m1, w1 := load("minimal", minimal), load("wxreply, sends held", srv)
	m2, w2 := load("minimal (again)", minimal), load("wxreply, sends held (again)", srv)
	acked := w1.requests + w2.requests
	release()
	backlog := drain(acked)
	t.Logf("callbacks with a reply, sends held: wxreply / minimal throughput %.2f; the backlog of %d replies then drained at %.0f sends/s",
		(w1.rps+w2.rps)/(m1.rps+m2.rps), acked, backlog)

	// 2. The same while the replies go out at WeChat's 30 ms a call.
	m3, w3 := load("minimal (third)", minimal), load("wxreply, sending", srv)
	acked += w3.requests
	drain(acked)
	t.Logf("callbacks with a reply, sending as they come: wxreply / minimal throughput %.2f", w3.rps/m3.rps)

	// Every acknowledged reply delivered, and none twice: the only extra
	// ones are of requests wrk cut off at the end of a run (recorded, but
	// never answered), at most one per connection.
	got := delivered()
	t.Logf("%d callbacks acknowledged, %d replies delivered", acked, got)
	if got < acked || got > acked+3*32 {
		t.Errorf("%d replies delivered for %d acknowledged callbacks", got, acked)
	}
	if failed := metricSum(t, srv, "wxreply_replies_failed_total"); failed != 0 {
		t.Errorf("%v replies failed", failed)
	}
	commits, ops := metricSum(t, srv, "wxreply_store_commits_total"), metricSum(t, srv, "wxreply_store_operations_total")
	secs := metricSum(t, srv, "wxreply_store_commit_seconds_total")
	t.Logf("store: %.0f commits, %.1f operations a commit, %.0f µs a commit", commits, ops/commits, secs/commits*1e6)
}

// startQuiet starts the binary with its logs going to a file, as an
// operator's would, rather than through the test.
func startQuiet(t *testing.T, logFile string, env []string) string {
	t.Helper()
	addr := freeAddr(t)
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(wxreplyBinary(t), "serve")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "WXREPLY_ADDR=" + addr}, env...)
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); f.Close() })
	waitHealthy(t, "http://"+addr)
	return "http://" + addr
}

// startMinimal runs the minimal handler in a process of its own (this
// test binary again), so that it is measured as the server is.
func startMinimal(t *testing.T) string {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestMinimalHandlerProcess$")
	cmd.Env = append(os.Environ(), "WXREPLY_MINIMAL_ADDR="+addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	base := "http://" + addr
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(base + "/"); err == nil {
			resp.Body.Close()
			return base
		}
		if time.Now().After(deadline) {
			t.Fatal("the minimal handler did not start")
		}
	}
}

// TestMinimalHandlerProcess is the minimal handler's process for
// startMinimal: net/http, the signature, encoding/xml and "success".
func TestMinimalHandlerProcess(t *testing.T) {
	addr := os.Getenv("WXREPLY_MINIMAL_ADDR")
	if addr == "" {
		t.Skip("the minimal handler's process, started by startMinimal")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /wechat", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if !wechat.VerifySignature(testToken, q.Get("signature"), q.Get("timestamp"), q.Get("nonce")) {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		var m wechat.Message
		if err := xml.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&m); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, "success")
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = http.Serve(ln, mux)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
