package test

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// The outbox's promises, proven on the real binary against a fake API at
// WeChat's latency: what was answered 200 (or 202) is delivered, across
// kill -9, restarts, outages and SIGTERM.

const apiLatency = 30 * time.Millisecond

// TestKill9UnderStreamLosesNothing kills the server with SIGKILL at
// random moments under a steady stream of callbacks, several rounds, and
// restarts it on the same store. Every acknowledged message is answered
// at least once, no user's replies go backwards, and the duplicates are
// no more than the calls at WeChat when the process died.
func TestKill9UnderStreamLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary through several crashes")
	}
	wx := newFakeWeChat(t, apiLatency)
	dir, rules := t.TempDir(), writeEchoRules(t)
	p := startWxreply(t, wx.env(dir, rules))
	s := newStream(40, p.base)
	inDoubt := 0
	var restarted []*process
	const rounds = 5
	for round := range rounds {
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { s.run(ctx, 400); close(done) }()
		// A random moment: anywhere in the first two seconds of the
		// stream, after the server has taken some of it.
		timer := time.NewTimer(time.Duration(300+rand.IntN(1700)) * time.Millisecond)
		<-timer.C
		// The calls in flight: the sends the server has under way (a
		// call answered whose outcome is not yet recorded is one), or
		// those the fake holds unanswered, whichever is more.
		inDoubt += max(int(metricSum(t, p.base, "wxreply_replies_in_flight")), wx.api.Pending())
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		p.wait(t)
		stop()
		<-done
		t.Logf("round %d: %d acknowledged so far, %d calls in doubt", round, len(s.ackedReplies()), inDoubt)
		p = startWxreply(t, wx.env(dir, rules))
		s.setBase(p.base)
		restarted = append(restarted, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	s.flush(ctx) // WeChat's retries of what was not acknowledged
	cancel()

	want := s.ackedReplies()
	if len(want) < rounds*100 {
		t.Fatalf("only %d callbacks acknowledged: the stream did not run", len(want))
	}
	wx.waitReplies(t, want, 60*time.Second)
	count, byUser := wx.replies()
	dups := 0
	for _, n := range count {
		dups += n - 1
	}
	t.Logf("%d acknowledged, %d replies accepted by the fake, %d duplicates, %d calls in doubt at the kills; statuses %v",
		len(want), len(wx.api.Accepted(wechat.PathCustomSend)), dups, inDoubt, s.codes)
	if dups > inDoubt {
		t.Errorf("%d duplicate replies, more than the %d calls in flight at the kills", dups, inDoubt)
	}
	s.checkAckOrder(t, byUser)
	// The kills come under a stream: most find batches in the journal
	// that SQLite had not committed, which the restart must run again.
	// (By now each restart's log is written out.)
	fromJournal := 0
	for _, p := range restarted {
		if len(p.logs.lines("batches recorded in the journal after the last commit were run again")) > 0 {
			fromJournal++
		}
	}
	t.Logf("%d of %d restarts ran batches again from the journal", fromJournal, rounds)
	if fromJournal == 0 {
		t.Errorf("no restart found a batch in the journal: the kills did not test it")
	}
	for code, n := range s.codes {
		if code != http.StatusOK && code != http.StatusServiceUnavailable {
			t.Errorf("%d callbacks answered %d", n, code)
		}
	}
}

// TestRetryAfterRestartAnsweredOnce: a message is acknowledged, the
// server dies before sending its reply, and WeChat's retry reaches the
// restarted server: one reply, not two.
func TestRetryAfterRestartAnsweredOnce(t *testing.T) {
	wx := newFakeWeChat(t, apiLatency)
	dir, rules := t.TempDir(), writeEchoRules(t)
	wx.proxy.Down() // the reply cannot leave before the kill
	p := startWxreply(t, wx.env(dir, rules))
	const user = "oRETRY_user_0001"
	first := text(user, "m-retry-1", 9_100_000_001)
	if code, body := postCallback(t, p.base, first); code != 200 {
		t.Fatalf("callback answered %d %q", code, body)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.wait(t)
	wx.proxy.Up()
	p = startWxreply(t, wx.env(dir, rules))
	if code, body := postCallback(t, p.base, first); code != 200 || body != "success" {
		t.Fatalf("WeChat's retry answered %d %q", code, body)
	}
	// A later message to the same user: its reply comes after any
	// reply to the first, so once it is in, a second one would be too.
	if code, _ := postCallback(t, p.base, text(user, "m-retry-2", 9_100_000_002)); code != 200 {
		t.Fatalf("second message answered %d", code)
	}
	wx.waitReplies(t, []string{"r m-retry-1", "r m-retry-2"}, 20*time.Second)
	count, byUser := wx.replies()
	if count["r m-retry-1"] != 1 {
		t.Errorf("the retried message was answered %d times, want 1: %v", count["r m-retry-1"], byUser[user])
	}
	checkOrder(t, byUser)
}

// TestAPIOutageRiddenOut: WeChat unreachable for 30 seconds while
// callbacks keep coming; every reply is delivered once it is back, and
// none failed.
func TestAPIOutageRiddenOut(t *testing.T) {
	outage := 30 * time.Second
	if testing.Short() {
		outage = 3 * time.Second
	}
	wx := newFakeWeChat(t, apiLatency)
	dir, rules := t.TempDir(), writeEchoRules(t)
	p := startWxreply(t, wx.env(dir, rules))
	s := newStream(30, p.base)
	wx.proxy.Down()
	ctx, stop := context.WithTimeout(context.Background(), 3*time.Second)
	s.run(ctx, 100)
	stop()
	down := time.NewTimer(outage - 3*time.Second)
	<-down.C
	wx.proxy.Up()
	want := s.ackedReplies()
	if len(want) < 250 {
		t.Fatalf("only %d callbacks acknowledged during the outage", len(want))
	}
	// The longest wait a retry may have been given during the outage is
	// its backoff's cap: they are all due within a minute.
	wx.waitReplies(t, want, 90*time.Second)
	if failed := metricSum(t, p.base, "wxreply_replies_failed_total"); failed != 0 {
		t.Errorf("%v replies failed across the outage", failed)
	}
	_, byUser := wx.replies()
	s.checkAckOrder(t, byUser)
}

// TestSIGTERMWhileAPIDownDeliversAfterRestart: a SIGTERM while WeChat is
// unreachable ends the process promptly and cleanly; the replies it could
// not send are delivered by the next start.
func TestSIGTERMWhileAPIDownDeliversAfterRestart(t *testing.T) {
	wx := newFakeWeChat(t, apiLatency)
	dir, rules := t.TempDir(), writeEchoRules(t)
	wx.proxy.Down()
	p := startWxreply(t, wx.env(dir, rules, "WXREPLY_SHUTDOWN_TIMEOUT=10s"))
	var want []string
	for i := range 50 {
		content := streamContent(i%5, int64(i))
		if code, _ := postCallback(t, p.base, text(streamOpenID(i%5), content, 9_200_000_000+int64(i))); code != 200 {
			t.Fatalf("callback %d answered %d", i, code)
		}
		want = append(want, "r "+content)
	}
	start := time.Now()
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, p.logs.String())
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("SIGTERM took %v", took)
	}
	if lines := p.logs.lines("message failed"); len(lines) > 0 {
		t.Errorf("replies failed at shutdown: %s", lines[0])
	}
	wx.proxy.Up()
	startWxreply(t, wx.env(dir, rules))
	wx.waitReplies(t, want, 30*time.Second)
	count, byUser := wx.replies()
	for _, w := range want {
		if count[w] != 1 {
			t.Errorf("%q delivered %d times", w, count[w])
		}
	}
	checkOrder(t, byUser)
}

// TestSecondSignalLosesNothing: a second SIGTERM during the shutdown ends
// the process at once, and the reply it was still waiting on is
// delivered by the next start.
func TestSecondSignalLosesNothing(t *testing.T) {
	wx := newFakeWeChat(t, apiLatency)
	release := wx.api.Hold(wechat.PathCustomSend)
	dir, rules := t.TempDir(), writeEchoRules(t)
	p := startWxreply(t, wx.env(dir, rules, "WXREPLY_SHUTDOWN_TIMEOUT=1m", "WXREPLY_LOG_LEVEL=info"))
	if code, _ := postCallback(t, p.base, text("oSIG2_user_0001", "m-sig-1", 9_300_000_001)); code != 200 {
		t.Fatalf("callback answered %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := wx.api.WaitPending(ctx, 1); err != nil {
		t.Fatal("the reply never reached the fake")
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "signal received")
	if code := p.stop(t, syscall.SIGTERM); code == 0 {
		t.Fatalf("a forced exit reported success:\n%s", p.logs.String())
	}
	release()
	startWxreply(t, wx.env(dir, rules))
	wx.waitReplies(t, []string{"r m-sig-1"}, 20*time.Second)
}

// TestPushAcceptedThenKilled: a push answered 202, then kill -9 before it
// could be sent; after the restart it is delivered and its status is
// known by its id.
func TestPushAcceptedThenKilled(t *testing.T) {
	const apiKey = "crash-test-push-key"
	wx := newFakeWeChat(t, apiLatency)
	dir, rules := t.TempDir(), writeEchoRules(t)
	wx.proxy.Down()
	env := wx.env(dir, rules, "WXREPLY_API_KEY="+apiKey)
	p := startWxreply(t, env)
	req, _ := http.NewRequest(http.MethodPost, p.base+"/api/v1/messages",
		strings.NewReader(`{"touser":"oPUSH_user_0001","msgtype":"text","text":{"content":"pushed before the crash"}}`))
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var accepted struct{ ID, Status string }
	json.NewDecoder(resp.Body).Decode(&accepted)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || accepted.ID == "" {
		t.Fatalf("push answered %d %+v", resp.StatusCode, accepted)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.wait(t)
	wx.proxy.Up()
	p = startWxreply(t, env)
	wx.waitReplies(t, []string{"pushed before the crash"}, 20*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, p.base+"/api/v1/messages/"+accepted.ID, nil)
		req.Header.Set("Authorization", "Bearer "+apiKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var st struct{ Status string }
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if resp.StatusCode == 200 && st.Status == "delivered" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("status after the restart: %d %+v", resp.StatusCode, st)
		}
		time.Sleep(50 * time.Millisecond) // polling the status, as a client does
	}
}

// metricSum is the sum of every series of a metric on the server's
// /metrics, 0 when it has none.
func metricSum(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		fields := strings.Fields(line)
		var v float64
		if err := json.Unmarshal([]byte(fields[len(fields)-1]), &v); err == nil {
			sum += v
		}
	}
	return sum
}
