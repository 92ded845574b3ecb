package test

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// TestWrkBinary measures the callback path on the binaries users run, in
// one run: wrk (one thread, 32 connections, each request with a signed
// query of its own) against
//
//   - minimal: net/http, the signature, encoding/xml and "success", in a
//     process of its own: the floor;
//   - silenceper: silenceper/wechat's official-account server (the most
//     used Go SDK) answering with its nil reply, built from the module of
//     its own under test/peers/silenceper;
//   - wxreply: `wxreply serve` with its defaults (the directory store, INFO
//     logs to a file, metrics on, the security checks) and the sample
//     rules.yaml, posted a LOCATION event that no rule answers ("no
//     reply") and the text "hi" that the greeting rule answers with one
//     customer-service reply, recorded in the store before the callback is
//     answered ("a reply");
//
// in alternating rounds. WeChat (the fake API in this process, 30 ms a
// call) holds every send during the rounds, so that its work (WeChat's, in
// production) is not on the two cores the callback path is measured on;
// then it lets them go, and every acknowledged reply must be delivered,
// none twice. A last run posts "hi" while the replies go out. It runs only
// when asked, since it takes minutes and needs wrk:
//
//	WXREPLY_WRK=1 go test ./test -run TestWrkBinary -v
//
// WXREPLY_WRK_DURATION (default 10s) is each run's length and
// WXREPLY_WRK_ROUNDS (default 3) the number of rounds.
func TestWrkBinary(t *testing.T) {
	script := requireWrk(t, "the binary")
	duration := envOr("WXREPLY_WRK_DURATION", "10s")
	rounds, err := strconv.Atoi(envOr("WXREPLY_WRK_ROUNDS", "3"))
	if err != nil || rounds < 1 {
		t.Fatalf("WXREPLY_WRK_ROUNDS %q: want a positive number", os.Getenv("WXREPLY_WRK_ROUNDS"))
	}
	wx := newFakeWeChat(t, apiLatency)
	minimal := startMinimal(t)
	peer := startSilenceper(t)
	rules, _ := filepath.Abs(filepath.Join("..", "rules.yaml"))
	logFile := filepath.Join(t.TempDir(), "wxreply.log")
	srv := startQuiet(t, logFile, append(wx.env(filepath.Join(t.TempDir(), "data"), rules), "WXREPLY_LOG_LEVEL=info"))

	delivered := func() int { return len(wx.api.Accepted(wechat.PathCustomSend)) }
	run := 0
	load := func(name, base, kind string) wrkResult {
		run++
		// The last run's server's writes go out before this run.
		flushWrites()
		r, err := runWrkBody(t, script, base, 32, duration, run*1_000_000_000, kind) // each run its own MsgIds
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-30s %8.0f req/s  p50 %-8s p99 %-8s non-2xx %d", name, r.rps, r.p50, r.p99, r.non2xx)
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
		return float64(delivered()-before) / time.Since(start).Seconds()
	}

	cases := []struct{ name, base, kind string }{
		{"minimal", minimal, "location"},
		{"silenceper", peer, "location"},
		{"wxreply, no reply", srv, "location"},
		{"wxreply, a reply", srv, "text"},
	}
	total := map[string]float64{}
	acked := 0
	release := wx.api.Hold(wechat.PathCustomSend)
	for round := 1; round <= rounds; round++ {
		ratio := map[string]float64{}
		for _, c := range cases {
			r := load(fmt.Sprintf("%s (round %d)", c.name, round), c.base, c.kind)
			total[c.name] += r.rps
			ratio[c.name] = r.rps
			if c.kind == "text" {
				acked += r.requests
			}
		}
		t.Logf("round %d: wxreply / minimal %.2f, wxreply / silenceper %.2f, a reply / minimal %.2f", round,
			ratio["wxreply, no reply"]/ratio["minimal"], ratio["wxreply, no reply"]/ratio["silenceper"],
			ratio["wxreply, a reply"]/ratio["minimal"])
	}
	t.Logf("all rounds: silenceper / minimal %.2f; wxreply, no reply / minimal %.2f; wxreply / silenceper %.2f; wxreply, a reply / minimal %.2f",
		total["silenceper"]/total["minimal"], total["wxreply, no reply"]/total["minimal"],
		total["wxreply, no reply"]/total["silenceper"], total["wxreply, a reply"]/total["minimal"])
	release()
	backlog := drain(acked)
	t.Logf("the backlog of %d replies drained at %.0f sends/s", acked, backlog)

	// The same while the replies go out at WeChat's 30 ms a call.
	m, w := load("minimal (sending)", minimal, "location"), load("wxreply, a reply, sending", srv, "text")
	acked += w.requests
	drain(acked)
	t.Logf("callbacks with a reply, sending as they come: wxreply / minimal throughput %.2f", w.rps/m.rps)

	// Every acknowledged reply delivered, and none twice: the only extra
	// ones are of requests wrk cut off at the end of a run (recorded, but
	// never answered), at most one per connection.
	got := delivered()
	t.Logf("%d callbacks with a reply acknowledged, %d replies delivered", acked, got)
	if got < acked || got > acked+(rounds+1)*32 {
		t.Errorf("%d replies delivered for %d acknowledged callbacks", got, acked)
	}
	if failed := metricSum(t, srv, "wxreply_replies_failed_total"); failed != 0 {
		t.Errorf("%v replies failed", failed)
	}
	commits, ops := metricSum(t, srv, "wxreply_store_commits_total"), metricSum(t, srv, "wxreply_store_operations_total")
	secs := metricSum(t, srv, "wxreply_store_commit_seconds_total")
	t.Logf("store: %.0f commits, %.1f operations a commit, %.0f µs a commit", commits, ops/commits, secs/commits*1e6)
	if dropped := metricSum(t, srv, "wxreply_log_lines_dropped_total"); dropped != 0 {
		t.Errorf("%v log lines dropped", dropped)
	}
}

// startSilenceper builds the peer SDK's server (test/peers/silenceper, a
// module of its own) and runs it; it checks that the peer refuses a bad
// signature, so that it is measured doing the work wxreply does.
func startSilenceper(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "silenceper")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join("peers", "silenceper")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the peer (it needs the Go module proxy once): %v\n%s", err, out)
	}
	addr := freeAddr(t)
	logs, err := os.Create(filepath.Join(t.TempDir(), "silenceper.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"WXREPLY_PEER_ADDR=" + addr, "WECHAT_TOKEN=" + testToken, "WECHAT_APPID=" + testAppID}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logs.Close() })
	base := "http://" + addr
	waitHealthy(t, base)
	body := `<xml><ToUserName>gh_x</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>LOCATION</Event></xml>`
	for sig, want := range map[string]string{wechat.Signature(testToken, "1", "n"): "success", "bad": ""} {
		resp, err := http.Post(base+"/wechat?timestamp=1&nonce=n&signature="+sig, "text/xml", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != want || (want == "" && resp.StatusCode != http.StatusForbidden) {
			t.Fatalf("peer answered %d %q to signature %q, want %q", resp.StatusCode, got, sig, want)
		}
	}
	return base
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
