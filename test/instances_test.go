package test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wxreply/wxreply/store/storetest"
	"github.com/wxreply/wxreply/wechat"
)

// Two real wxreply processes on one Redis (the same key prefix), each on
// its own port, against one fake WeChat API, behave as one server: the
// test posts to them in turn, as a round-robin load balancer would.

// TestTwoInstancesRetryAnsweredOnce: WeChat's three tries of one message
// (one MsgId), or of one event (one FromUserName and CreateTime), split
// across the instances — A, B, A, one after the other or all at once —
// are answered 200 each and replied to once.
func TestTwoInstancesRetryAnsweredOnce(t *testing.T) {
	wx := newFakeWeChat(t, apiLatency)
	ps := startPair(t, wx, redisStore(t, storetest.RedisURL(t)), writeInstanceRules(t))
	a, b := ps[0].base, ps[1].base
	created := time.Now().Unix()
	cases := []struct {
		name       string
		openid     string
		body       func(openid string) []byte
		reply      func(openid string) string
		concurrent bool
	}{
		{name: "message", openid: "oINST_retry_msg_0001",
			body:  func(o string) []byte { return text(o, "m-once", 9_400_000_001) },
			reply: func(string) string { return "r m-once" }},
		{name: "message concurrent", openid: "oINST_retry_msg_0002", concurrent: true,
			body:  func(o string) []byte { return text(o, "m-once", 9_400_000_002) },
			reply: func(string) string { return "r m-once" }},
		{name: "event", openid: "oINST_retry_evt_0001",
			body:  func(o string) []byte { return event(o, "subscribe", created) },
			reply: func(o string) string { return fmt.Sprintf("welcome %s %d", o, created) }},
		{name: "event concurrent", openid: "oINST_retry_evt_0002", concurrent: true,
			body:  func(o string) []byte { return event(o, "subscribe", created) },
			reply: func(o string) string { return fmt.Sprintf("welcome %s %d", o, created) }},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := c.body(c.openid)
			targets := []string{a, b, a}
			type result struct {
				code int
				body string
				err  error
			}
			results := make([]result, len(targets))
			try := func(k int) {
				code, out, err := tryCallback(targets[k], body)
				results[k] = result{code, out, err}
			}
			if c.concurrent {
				concurrently(func() { try(0) }, func() { try(1) }, func() { try(2) })
			} else {
				for k := range targets {
					try(k)
				}
			}
			for k, r := range results {
				if r.err != nil || r.code != http.StatusOK {
					t.Fatalf("try %d (instance %c) answered %d %q (%v), want 200 success", k+1, "ABA"[k], r.code, r.body, r.err)
				}
				// The first copy is answered success (no passive reply),
				// and so must its retries be, on either instance.
				if r.body != "success" {
					t.Errorf("try %d (instance %c) answered 200 %q, want success", k+1, "ABA"[k], r.body)
				}
			}
			// A later message of the same user: a second reply to the
			// tries would have been recorded before it, so it would be
			// sent before it.
			after := fmt.Sprintf("m-after-%d", i)
			if code, out := postCallback(t, b, text(c.openid, after, 9_400_100_000+int64(i))); code != http.StatusOK {
				t.Fatalf("the later message answered %d %q", code, out)
			}
			wx.waitText(t, c.openid, "r "+after)
			got := wx.acceptedFor(c.openid)
			if want := []string{c.reply(c.openid), "r " + after}; !slices.Equal(got, want) {
				t.Errorf("%s received %q, want %q: the three tries answered once", c.openid, got, want)
			}
			if n := wx.callsFor(c.openid); n != 2 {
				t.Errorf("%d calls to WeChat for %s, want 2", n, c.openid)
			}
		})
	}
}

// TestTwoInstancesRetryInSafeMode: in safe mode a retry at the other
// instance gets the first copy's answer, encrypted for itself: success
// for a reply sent through the API (as to the first copy), the same
// passive reply for a passive rule; and one reply at WeChat.
func TestTwoInstancesRetryInSafeMode(t *testing.T) {
	wx := newFakeWeChat(t, apiLatency)
	ps := startPair(t, wx, redisStore(t, storetest.RedisURL(t)), writeInstanceRules(t),
		"WECHAT_ENCODING_AES_KEY="+testAESKey)
	cipher, err := wechat.NewCipher(testAESKey, testAppID)
	if err != nil {
		t.Fatal(err)
	}
	seal := func(plain []byte) []byte {
		enc, err := cipher.Encrypt(plain)
		if err != nil {
			t.Fatal(err)
		}
		return wechat.SafeModeBody("gh_test0000001", enc)
	}
	// open returns the plaintext of an encrypted passive answer, or the
	// answer as it is when it is not one.
	open := func(answer string) string {
		m, err := wechat.ParseMessage([]byte(answer))
		if err != nil || m.Encrypt == "" {
			return answer
		}
		plain, err := cipher.Decrypt(m.Encrypt)
		if err != nil {
			t.Fatalf("answer %q does not decrypt: %v", answer, err)
		}
		return "decrypted:" + string(plain)
	}

	const openid = "oINST_safe_0001"
	body := seal(text(openid, "m-safe", 9_400_200_001))
	for k, base := range []string{ps[0].base, ps[1].base, ps[0].base} {
		code, out := postCallback(t, base, body)
		if code != http.StatusOK || out != "success" {
			t.Errorf("try %d (instance %c) answered %d %q (%s), want 200 success", k+1, "ABA"[k], code, out, open(out))
		}
	}
	passive := seal(text(openid, "p-safe", 9_400_200_002))
	code, first := postCallback(t, ps[0].base, passive)
	if code != http.StatusOK || !strings.Contains(open(first), "p p-safe") {
		t.Fatalf("passive rule at A answered %d %s", code, open(first))
	}
	code, retry := postCallback(t, ps[1].base, passive)
	if code != http.StatusOK || open(retry) != open(first) {
		t.Errorf("its retry at B answered %d %s, want the first copy's %s", code, open(retry), open(first))
	}
	after := seal(text(openid, "m-safe-after", 9_400_200_003))
	if code, out := postCallback(t, ps[1].base, after); code != http.StatusOK {
		t.Fatalf("the later message answered %d %q", code, out)
	}
	wx.waitText(t, openid, "r m-safe-after")
	if got, want := wx.acceptedFor(openid), []string{"r m-safe", "r m-safe-after"}; !slices.Equal(got, want) {
		t.Errorf("%s received %q, want %q", openid, got, want)
	}
}

// TestTwoInstancesColdStartFetchesOneToken: both instances start cold and
// 40 users' first messages arrive at both at once: one token fetch at
// WeChat for the two of them, and all 40 replies delivered.
func TestTwoInstancesColdStartFetchesOneToken(t *testing.T) {
	wx := newFakeWeChat(t, apiLatency)
	// A slow token API keeps the first fetch under way while the other
	// instance wants a token too.
	wx.api.SetLatency(wechat.PathStableToken, 300*time.Millisecond)
	wx.api.SetLatency(wechat.PathToken, 300*time.Millisecond)
	// Four sends at a time each: while one instance's four wait for the
	// token, it claims no more, so the other one claims some of the 40
	// and needs a token as well.
	ps := startPair(t, wx, redisStore(t, storetest.RedisURL(t)), writeInstanceRules(t), "WXREPLY_WORKERS=4")
	if n := wx.api.TokenFetches(); n != 0 {
		t.Fatalf("%d token fetches before any reply was due", n)
	}
	const users = 40
	errs := make([]error, users)
	var fns []func()
	var want []string
	for u := range users {
		openid := fmt.Sprintf("oINST_cold_%04d", u)
		content := fmt.Sprintf("m-cold-%04d", u)
		want = append(want, "r "+content)
		base, body := ps[u%2].base, text(openid, content, 9_401_000_000+int64(u))
		fns = append(fns, func() {
			code, out, err := tryCallback(base, body)
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("answered %d %q", code, out)
			}
			errs[u] = err
		})
	}
	start := time.Now()
	concurrently(fns...)
	for u, err := range errs {
		if err != nil {
			t.Fatalf("user %d's first message: %v", u, err)
		}
	}
	wx.waitReplies(t, want, 20*time.Second)
	took := time.Since(start)
	count, _ := wx.replies()
	for _, w := range want {
		if count[w] != 1 {
			t.Errorf("%q delivered %d times, want once", w, count[w])
		}
	}
	sent := sentBy(t, ps, users)
	sentA, sentB := sent[0], sent[1]
	fetches := wx.api.TokenFetches()
	t.Logf("40 replies delivered in %v: %v by A, %v by B; %d token fetches", took.Round(time.Millisecond), sentA, sentB, fetches)
	if sentA == 0 || sentB == 0 {
		t.Fatalf("one instance sent every reply (A %v, B %v): the other never needed a token, so one fetch proves nothing", sentA, sentB)
	}
	if fetches != 1 {
		t.Errorf("%d token fetches at WeChat for two cold instances on one Redis, want 1", fetches)
	}
}

// TestTwoInstancesKeepOneUsersOrder: one user's messages, each posted
// once the one before was answered, to the instances in turn: the
// replies reach WeChat in that order, each once. First 20 at WeChat's
// 30 ms a call, so that the user's lane is never empty and the instance
// sending holds it; then 20 at no latency, so that the lane empties
// between messages and the two instances race to claim it.
func TestTwoInstancesKeepOneUsersOrder(t *testing.T) {
	wx := newFakeWeChat(t, apiLatency)
	ps := startPair(t, wx, redisStore(t, storetest.RedisURL(t)), writeInstanceRules(t))
	const perRound = 20
	const openid = "oINST_order_0001"
	var want []string
	for round, latency := range []time.Duration{apiLatency, 0} {
		wx.api.SetLatency(wechat.PathCustomSend, latency)
		sentBefore := [2]float64{}
		for i, p := range ps {
			sentBefore[i] = metricSum(t, p.base, "wxreply_replies_delivered_total")
		}
		for i := range perRound {
			content := fmt.Sprintf("m-order-%d-%02d", round, i)
			if code, out := postCallback(t, ps[i%2].base, text(openid, content, 9_402_000_000+int64(round*perRound+i))); code != http.StatusOK {
				t.Fatalf("message %d answered %d %q", i, code, out)
			}
			want = append(want, "r "+content)
		}
		// A repeat of an earlier reply would come before the last one:
		// once the last is in, all are.
		wx.waitText(t, openid, want[len(want)-1])
		sent := sentBy(t, ps, float64(len(want)))
		for i := range sent {
			sent[i] -= sentBefore[i]
		}
		t.Logf("at %v a call: %v replies sent by A, %v by B", latency, sent[0], sent[1])
	}
	if got := wx.acceptedFor(openid); !slices.Equal(got, want) {
		t.Errorf("replies reached WeChat as\n%q\nwant each once, in order:\n%q", got, want)
	}
}

// TestTwoInstancesPushIdempotent: the push API's Idempotency-Key holds
// across the instances: the same key and body at A then at B (and then
// another key at both at once) answer 202 with one id, WeChat gets one
// message per key, and each id's status is readable, delivered, at both.
func TestTwoInstancesPushIdempotent(t *testing.T) {
	wx := newFakeWeChat(t, apiLatency)
	ps := startPair(t, wx, redisStore(t, storetest.RedisURL(t)), writeInstanceRules(t), "WXREPLY_API_KEY="+testAPIKey)
	a, b := ps[0].base, ps[1].base
	const openid = "oINST_push_0001"
	msg := func(content string) string {
		return `{"touser":"` + openid + `","msgtype":"text","text":{"content":"` + content + `"}}`
	}

	first := push(a, "order-42-shipped", msg("pushed once"))
	if first.Err != nil || first.Code != http.StatusAccepted || first.ID == "" || first.Status != "queued" {
		t.Fatalf("push at A: %d %s (%v), want 202 queued with an id", first.Code, first.Body, first.Err)
	}
	again := push(b, "order-42-shipped", msg("pushed once"))
	if again.Err != nil || again.Code != http.StatusAccepted || again.ID != first.ID {
		t.Fatalf("the same key and body at B: %d %s (%v), want 202 with A's id %s", again.Code, again.Body, again.Err, first.ID)
	}

	// Six at once, three at each, with another key.
	answers := make([]pushAnswer, 6)
	var fns []func()
	for k := range answers {
		base := ps[k%2].base
		fns = append(fns, func() { answers[k] = push(base, "order-43-shipped", msg("pushed once, at once")) })
	}
	concurrently(fns...)
	for k, ans := range answers {
		if ans.Err != nil || ans.Code != http.StatusAccepted || ans.ID == "" || ans.ID != answers[0].ID {
			t.Fatalf("concurrent push %d: %d %s (%v), want 202 with the id %s of the others", k, ans.Code, ans.Body, ans.Err, answers[0].ID)
		}
	}
	if answers[0].ID == first.ID {
		t.Fatalf("two keys answered with one id %s", first.ID)
	}

	// A later push: a second copy of either would be sent before it.
	later := push(b, "", msg("pushed later"))
	if later.Err != nil || later.Code != http.StatusAccepted {
		t.Fatalf("later push: %d %s (%v)", later.Code, later.Body, later.Err)
	}
	for _, id := range []string{first.ID, answers[0].ID, later.ID} {
		for _, base := range []string{a, b} {
			waitStatus(t, base, id, "delivered")
		}
	}
	if got, want := wx.acceptedFor(openid), []string{"pushed once", "pushed once, at once", "pushed later"}; !slices.Equal(got, want) {
		t.Errorf("WeChat received %q, want %q: one send per Idempotency-Key", got, want)
	}
}

// TestTwoInstancesShareClosedWindow: WeChat answers 45015 to the reply
// to a user's message, sent by one instance; a push to that user at the
// other instance is refused 409, and nothing is sent.
func TestTwoInstancesShareClosedWindow(t *testing.T) {
	wx := newFakeWeChat(t, apiLatency)
	ps := startPair(t, wx, redisStore(t, storetest.RedisURL(t)), writeInstanceRules(t), "WXREPLY_API_KEY="+testAPIKey)
	const openid = "oINST_window_0001"
	wx.api.SetOutOfWindow(openid)
	if code, out := postCallback(t, ps[0].base, text(openid, "m-window", 9_403_000_001)); code != http.StatusOK {
		t.Fatalf("callback answered %d %q", code, out)
	}
	// Either instance may have sent the reply (A took the callback and
	// is woken first, but the outbox is shared): find the one that got
	// the 45015. It recorded the closed window before logging the
	// failure.
	sender := -1
	waitFor(t, 15*time.Second, func() bool {
		for i, p := range ps {
			if len(p.logs.lines("message failed", openid, `"errcode":45015`)) > 0 {
				sender = i
				return true
			}
		}
		return false
	}, func() string {
		return fmt.Sprintf("no instance logged the reply failed with 45015; WeChat got %d calls for %s", wx.callsFor(openid), openid)
	})
	other := 1 - sender
	t.Logf("instance %c sent the reply and got 45015; pushing at instance %c", 'A'+sender, 'A'+other)
	calls := wx.callsFor(openid)
	if calls != 1 {
		t.Fatalf("%d calls to WeChat for %s, want the one reply", calls, openid)
	}
	body := `{"touser":"` + openid + `","msgtype":"text","text":{"content":"pushed outside the window"}}`
	for _, i := range []int{other, sender} {
		ans := push(ps[i].base, "", body)
		if ans.Err != nil || ans.Code != http.StatusConflict {
			t.Errorf("push at instance %c: %d %s (%v), want 409: the window is known closed", 'A'+i, ans.Code, ans.Body, ans.Err)
		}
	}
	// A user the store has never seen is still tried: the 409 is for
	// the window known closed, not for any push.
	fresh := push(ps[other].base, "", `{"touser":"oINST_window_0002","msgtype":"text","text":{"content":"hello"}}`)
	if fresh.Err != nil || fresh.Code != http.StatusAccepted {
		t.Fatalf("push to another user: %d %s (%v), want 202", fresh.Code, fresh.Body, fresh.Err)
	}
	waitStatus(t, ps[sender].base, fresh.ID, "delivered")
	if n := wx.callsFor(openid); n != calls {
		t.Errorf("%d calls to WeChat for %s after the 409s, want %d: a refused push was sent", n, openid, calls)
	}
}

// TestTwoInstancesKill9LosesNothing: a steady stream of callbacks goes
// to both instances in turn through a round-robin balancer; one is
// killed with SIGKILL, the balancer then sends everything to the other,
// which takes over the dead one's leased lanes once their lease (2 s)
// runs out. Every acknowledged message is answered at least once, no
// user's replies go backwards, and the duplicates are no more than the
// calls the dead one had in flight.
func TestTwoInstancesKill9LosesNothing(t *testing.T) {
	const lease = 2 * time.Second
	wx := newFakeWeChat(t, apiLatency)
	ps := startPair(t, wx, redisStore(t, storetest.RedisURL(t)), writeInstanceRules(t), "WXREPLY_LEASE="+lease.String())
	victim, survivor := ps[0], ps[1]
	lb := newBalancer(t, victim.base, survivor.base)
	s := newStream(40, lb.url)
	ctx, stopStream := context.WithCancel(context.Background())
	streamDone := make(chan struct{})
	go func() { s.run(ctx, 400); close(streamDone) }()
	stop := func() { stopStream(); <-streamDone }
	defer stop()

	waitFor(t, 15*time.Second, func() bool { return len(s.ackedReplies()) >= 300 },
		func() string {
			return fmt.Sprintf("only %d callbacks acknowledged; statuses %v", len(s.ackedReplies()), streamCodes(s))
		})
	// The calls in flight at the kill: the sends the victim has under
	// way (a call answered whose outcome is not yet recorded is one), or
	// every call the fake holds unanswered, whichever is more.
	var inFlight float64
	waitFor(t, 10*time.Second, func() bool {
		inFlight = metricSum(t, victim.base, "wxreply_replies_in_flight")
		return inFlight > 0
	}, func() string { return "the instance to kill never had a send under way" })
	pending := wx.api.Pending()
	killed := time.Now()
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	lb.Down(0)
	victim.wait(t)
	inDoubt := max(int(inFlight), pending)
	ackedAtKill := s.ackedReplies()

	// The stream goes on, to the survivor only, until every reply
	// acknowledged before the kill is delivered: the dead one's lanes
	// taken over.
	var missing int
	waitFor(t, lease+20*time.Second, func() bool {
		count, _ := wx.replies()
		missing = 0
		for _, r := range ackedAtKill {
			if count[r] == 0 {
				missing++
			}
		}
		return missing == 0
	}, func() string {
		return fmt.Sprintf("%d of the %d replies acknowledged before the kill not delivered by the survivor", missing, len(ackedAtKill))
	})
	allAtKill := time.Since(killed)
	stop()
	flushCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	s.flush(flushCtx) // WeChat's retries of what was not acknowledged
	cancel()

	want := s.ackedReplies()
	wx.waitReplies(t, want, 30*time.Second)
	count, byUser := wx.replies()
	dups := 0
	for _, n := range count {
		dups += n - 1
	}

	// The takeover: for each user with a reply acknowledged and not yet
	// delivered at the kill, how long until WeChat got the user's next
	// reply. A lane the survivor held goes on at once; one the dead
	// instance held waits out its lease.
	accepted := wx.api.Accepted(wechat.PathCustomSend)
	deliveredBefore := map[string]bool{}
	for _, r := range accepted {
		if r.Time.Before(killed) && r.Custom != nil && r.Custom.Text != nil {
			deliveredBefore[r.Custom.Text.Content] = true
		}
	}
	waiting := map[string]bool{}
	for _, r := range ackedAtKill {
		if !deliveredBefore[r] {
			waiting[userOfReply(r)] = true
		}
	}
	gaps := map[string]time.Duration{}
	for _, r := range accepted {
		if u := r.OpenID; waiting[u] && !r.Time.Before(killed) {
			if _, ok := gaps[u]; !ok {
				gaps[u] = r.Time.Sub(killed)
			}
		}
	}
	var takeover time.Duration
	var takenOver []string
	for u, g := range gaps {
		takeover = max(takeover, g)
		if g > lease/3 {
			takenOver = append(takenOver, u)
		}
	}
	sort.Strings(takenOver)
	t.Logf("victim: %v sends in flight at the kill, fake held %d calls (in doubt %d, WXREPLY_WORKERS 128); "+
		"%d acknowledged at the kill, %d in all; %d accepted by the fake, %d duplicates; balancer sent %d to the victim, %d to the survivor; statuses %v",
		inFlight, pending, inDoubt, len(ackedAtKill), len(want), len(accepted), dups,
		lb.served[0].Load(), lb.served[1].Load(), s.codes)
	t.Logf("takeover (lease %v): %d users had replies waiting at the kill; %d lanes waited out the dead one's lease; "+
		"the last lane moved %v after the kill; every reply acknowledged before the kill was delivered %v after it",
		lease, len(waiting), len(takenOver), takeover.Round(time.Millisecond), allAtKill.Round(time.Millisecond))

	if len(ackedAtKill) < 300 || len(want) <= len(ackedAtKill) {
		t.Fatalf("%d acknowledged at the kill, %d in all: the stream did not run on both, then on the survivor", len(ackedAtKill), len(want))
	}
	if dups > inDoubt {
		t.Errorf("%d duplicate replies, more than the %d calls in flight at the kill", dups, inDoubt)
	}
	if limit := lease + 5*time.Second; takeover > limit {
		t.Errorf("the dead instance's lanes moved %v after the kill, more than the lease %v and a margin", takeover, lease)
	}
	s.checkAckOrder(t, byUser)
	for code, n := range s.codes {
		if code != http.StatusOK && code != http.StatusBadGateway {
			t.Errorf("%d callbacks answered %d", n, code)
		}
	}
}

// userOfReply is the openid of the stream's user whose message the reply
// "r m-USER-SEQ" answers.
func userOfReply(reply string) string {
	var u int
	var seq int64
	if _, err := fmt.Sscanf(strings.TrimPrefix(reply, "r "), "m-%04d-%06d", &u, &seq); err != nil {
		return ""
	}
	return streamOpenID(u)
}

// TestTwoInstancesRideOutRedisRestart: with Redis killed, both instances
// answer callbacks 503 (WeChat retries) and /healthz 503; once Redis is
// back they are healthy again by themselves, WeChat's retries are
// answered and replied to once, and new callbacks too.
func TestTwoInstancesRideOutRedisRestart(t *testing.T) {
	rs := storetest.StartRedis(t, storetest.RedisServerOptions{})
	wx := newFakeWeChat(t, apiLatency)
	ps := startPair(t, wx, rs.URL(), writeInstanceRules(t))
	for i, p := range ps {
		if code, out := postCallback(t, p.base, text(fmt.Sprintf("oINST_redis_%04d", i), fmt.Sprintf("m-before-%d", i), 9_404_000_000+int64(i))); code != http.StatusOK {
			t.Fatalf("instance %c before the kill: callback answered %d %q", 'A'+i, code, out)
		}
	}
	wx.waitReplies(t, []string{"r m-before-0", "r m-before-1"}, 15*time.Second)

	rs.Kill()
	killed := time.Now()
	for i, p := range ps {
		waitFor(t, 10*time.Second, func() bool { return healthCode(p.base) == http.StatusServiceUnavailable },
			func() string {
				return fmt.Sprintf("instance %c: /healthz answers %d with Redis down", 'A'+i, healthCode(p.base))
			})
	}
	unhealthy := time.Since(killed)
	down := [2][]byte{}
	for i, p := range ps {
		down[i] = text(fmt.Sprintf("oINST_redis_%04d", i), fmt.Sprintf("m-down-%d", i), 9_404_000_100+int64(i))
		if code, out := postCallback(t, p.base, down[i]); code != http.StatusServiceUnavailable {
			t.Errorf("instance %c with Redis down: callback answered %d %q, want 503", 'A'+i, code, out)
		}
	}

	rs.Start()
	started := time.Now()
	for i, p := range ps {
		waitFor(t, 15*time.Second, func() bool { return healthCode(p.base) == http.StatusOK },
			func() string {
				return fmt.Sprintf("instance %c: /healthz answers %d with Redis back", 'A'+i, healthCode(p.base))
			})
	}
	healthy := time.Since(started)
	// WeChat's retries of the refused callbacks, each to the other
	// instance now, and a new message at each.
	want := []string{"r m-down-0", "r m-down-1"}
	for i := range ps {
		if code, out := postCallback(t, ps[1-i].base, down[i]); code != http.StatusOK || out != "success" {
			t.Fatalf("retry of callback %d at instance %c with Redis back: %d %q", i, 'A'+(1-i), code, out)
		}
	}
	for i, p := range ps {
		content := fmt.Sprintf("m-after-%d", i)
		if code, out := postCallback(t, p.base, text(fmt.Sprintf("oINST_redis_%04d", i), content, 9_404_000_200+int64(i))); code != http.StatusOK {
			t.Fatalf("instance %c with Redis back: callback answered %d %q", 'A'+i, code, out)
		}
		want = append(want, "r "+content)
	}
	wx.waitReplies(t, want, 20*time.Second)
	t.Logf("both unhealthy %v after Redis was killed; both healthy %v after it was started again",
		unhealthy.Round(time.Millisecond), healthy.Round(time.Millisecond))
	for i := range ps {
		openid := fmt.Sprintf("oINST_redis_%04d", i)
		wantUser := []string{fmt.Sprintf("r m-before-%d", i), fmt.Sprintf("r m-down-%d", i), fmt.Sprintf("r m-after-%d", i)}
		if got := wx.acceptedFor(openid); !slices.Equal(got, wantUser) {
			t.Errorf("%s received %q, want %q", openid, got, wantUser)
		}
	}
}

// One signed query, one body, on every instance: the query seen with one
// body at A is refused at B for another body (an outsider replaying a
// leaked URL with a message of their own), while the same body at B is
// WeChat's retry, answered as one.
func TestTwoInstancesOneQueryOneBody(t *testing.T) {
	wx := newFakeWeChat(t, apiLatency)
	ps := startPair(t, wx, redisStore(t, storetest.RedisURL(t)), writeInstanceRules(t))
	a, b := ps[0].base, ps[1].base
	first := text("oINST_query_0001", "m-first", 9_500_000_001)
	u, err := signedCallbackURL(a, first)
	if err != nil {
		t.Fatal(err)
	}
	postTo := func(base string, body []byte) (int, string) {
		t.Helper()
		resp, err := http.Post(base+strings.TrimPrefix(u, a), "text/xml", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	if code, out := postTo(a, first); code != 200 {
		t.Fatalf("first body at A: %d %s", code, out)
	}
	forged := text("oINST_query_invented", "m-forged", 9_500_000_002)
	if code, out := postTo(b, forged); code != 403 {
		t.Fatalf("another body under the same query at B: %d %s, want 403", code, out)
	}
	if code, out := postTo(b, first); code != 200 || out != "success" {
		t.Fatalf("the same body at B: %d %q, want 200 success", code, out)
	}
	wx.waitText(t, "oINST_query_0001", "r m-first")
	// A later message of the user's goes out after the first: had the
	// forged or repeated copy been sent, it would be there before it.
	if code, out := tryPost(t, b, text("oINST_query_0001", "m-later", 9_500_000_003)); code != 200 {
		t.Fatalf("a later message: %d %s", code, out)
	}
	wx.waitText(t, "oINST_query_0001", "r m-later")
	if got := wx.acceptedFor("oINST_query_0001"); len(got) != 2 {
		t.Errorf("the user got %q, want the first reply once, then the later one", got)
	}
	if n := wx.callsFor("oINST_query_invented"); n != 0 {
		t.Errorf("%d calls to the invented openid, want none", n)
	}
}

func tryPost(t *testing.T, base string, body []byte) (int, string) {
	t.Helper()
	code, out, err := tryCallback(base, body)
	if err != nil {
		t.Fatal(err)
	}
	return code, out
}
