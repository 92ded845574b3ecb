package test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// The findings of the security issue that are about what an outsider can
// make the server hold or spend, through the real server.

// Finding 4: invented request methods do not grow /metrics.
func TestInventedMethodsDoNotGrowMetrics(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	scrape := func() string {
		resp, err := http.Get(h.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	invent := func(from, n int) {
		for i := from; i < from+n; i++ {
			for _, path := range []string{"/wechat", fmt.Sprintf("/p%d", i)} {
				req, _ := http.NewRequest(fmt.Sprintf("INVENTED%d", i), h.url+path, nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
		}
	}
	invent(0, 10) // the bounded series they fall into exist from here on
	scrape()      // and the scrape's own
	before := scrape()
	invent(10, 4000)
	after := scrape()
	// The figures' digits may lengthen a little; the series may not.
	if len(after) > len(before)+512 || strings.Count(after, "\n") != strings.Count(before, "\n") {
		t.Errorf("/metrics grew from %d bytes (%d lines) to %d (%d) with 4,000 invented methods and paths",
			len(before), strings.Count(before, "\n"), len(after), strings.Count(after, "\n"))
	}
	if strings.Contains(after, "INVENTED") || strings.Contains(after, "/p17") {
		t.Error("an invented method or path is a label in /metrics")
	}
}

// Finding 5: memory does not grow with the users an outsider invents;
// their windows and marks live in the store (here a directory).
func TestInventedUsersDoNotGrowMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's shadow memory makes heap figures meaningless")
	}
	h := newHarness(t, harnessOptions{store: "dir", quiet: true})
	release := h.api.Hold(wechat.PathCustomSend) // the replies wait in the store
	defer release()
	post := func(from, n int) {
		var wg sync.WaitGroup
		var next atomic.Int64
		next.Store(int64(from))
		for range 8 {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= int64(from+n) {
						return
					}
					if code, body := h.post(t, text(fmt.Sprintf("oINVENTED_%07d", i), "hi", 7_000_000+i)); code != 200 {
						t.Errorf("callback %d: %d %s", i, code, body)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	post(0, 2000) // warm: connections, caches, the store's pages
	before := heap()
	const n = 20000
	post(2000, n)
	after := heap()
	perUser := (int64(after) - int64(before)) / n
	t.Logf("heap %d → %d bytes for %d more users: %d bytes a user", before, after, n, perUser)
	if perUser > 100 {
		t.Errorf("heap grows %d bytes per invented user, want it flat (the state is in the store)", perUser)
	}
}

// Finding 6: WeChat refusing every token does not set off a token fetch
// per message; the messages wait in the outbox, and /metrics says why.
func TestTokenRefusalsDoNotSpendTheQuota(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.api.FailNext(wechat.PathCustomSend, wechat.ErrCodeInvalidCredential, 1_000_000)
	for i := range 50 {
		if code, body := h.post(t, text(fmt.Sprintf("oTOKEN_%02d", i), "hi", 8_000_000+int64(i))); code != 200 {
			t.Fatalf("callback %d: %d %s", i, code, body)
		}
	}
	waitFor(t, 10*time.Second, func() bool { return metricSum(t, h.url, "wxreply_token_paused") == 1 },
		func() string { return "wxreply_token_paused never 1" })
	// Every message was tried once or more and is waiting again.
	waitFor(t, 10*time.Second, func() bool { return h.outbox().Stats().Retried >= 50 },
		func() string { return "not every message was parked: " + statsString(h.outbox().Stats()) })
	if got := h.api.TokenFetches(); got > 2 {
		t.Errorf("%d token fetches for 50 messages refused, want at most 2", got)
	}
	if st := h.outbox().Stats(); st.Failed != 0 {
		t.Errorf("messages failed while tokens were refused: %s", statsString(st))
	}
	if n, _ := h.outbox().Pending(context.Background()); n != 50 {
		t.Errorf("%d messages waiting, want 50", n)
	}
	if !strings.Contains(h.logs.String(), "WeChat refuses the access tokens it issued") {
		t.Errorf("no log line says why calls are paused:\n%s", h.logs.String())
	}
}

// Finding 7: more Idempotency-Keys than the old cap of 100,000 are all
// taken; none is answered 429. It takes a minute, so it runs without the
// race detector only (.ci/run runs it on its own).
func TestManyIdempotencyKeysNoLockOut(t *testing.T) {
	if raceEnabled {
		t.Skip("100,000 pushes: run without -race (.ci/run does)")
	}
	h := newHarness(t, harnessOptions{store: "dir", quiet: true})
	release := h.api.Hold(wechat.PathCustomSend)
	defer release()
	const n = 100_100
	var next, refused atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for range 16 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				req, _ := http.NewRequest("POST", h.url+"/api/v1/messages",
					strings.NewReader(`{"touser":"oIDEM","msgtype":"text","text":{"content":"x"}}`))
				req.Header.Set("Authorization", "Bearer "+testAPIKey)
				req.Header.Set("Idempotency-Key", fmt.Sprintf("key-%d", i))
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if r := refused.Load(); r != 0 {
		t.Errorf("%d of %d pushes with new Idempotency-Keys refused", r, n)
	}
}
