package wechat_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// Many users, a mix of transient and final answers, retries parked and
// resumed, and a Shutdown that drains or gives up: every accepted message
// has exactly one result, each user's delivered replies arrive once and
// in order, and the counters add up.
func TestSenderUnderMixedFailures(t *testing.T) {
	tests := []struct {
		name     string
		deadline time.Duration
	}{
		{"drained", 20 * time.Second},
		{"cut short", 30 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const users, per = 20, 10
			srv := fakeAPI(t)
			srv.SetLatency(wechat.PathCustomSend, 200*time.Microsecond)
			// One answer per call, in turn: busy, fine, busy twice, the
			// per-interaction cap (final), fine...
			for range 40 {
				for _, code := range []int{-1, 0, -1, -1, 0, 45047, 0, 0} {
					srv.FailNext(wechat.PathCustomSend, code, 1)
				}
			}
			s, res := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil), Workers: 4,
				MaxAttempts: 3, BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
			var ids []string
			byCall := map[string]string{} // openid/content → id
			for i := range per {
				for u := range users {
					openid, content := fmt.Sprintf("u%02d", u), strconv.Itoa(i)
					got, err := s.Enqueue(textOut(openid, content))
					if err != nil {
						t.Fatal(err)
					}
					ids = append(ids, got...)
					byCall[openid+"/"+content] = got[0]
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), tt.deadline)
			defer cancel()
			_ = s.Shutdown(ctx)
			res.wait(t, len(ids))
			delivered := 0
			for _, id := range ids {
				r := res.get(id)
				if len(r) != 1 {
					t.Fatalf("%s: %d results", id, len(r))
				}
				if r[0].Delivered {
					delivered++
				}
			}
			for u := range users {
				got := texts(srv, fmt.Sprintf("u%02d", u))
				for i := 1; i < len(got); i++ {
					a, _ := strconv.Atoi(got[i-1])
					b, _ := strconv.Atoi(got[i])
					if b <= a {
						t.Errorf("u%02d received %v: out of order or twice", u, got)
						break
					}
				}
			}
			// What the fake accepted was reported delivered, or cut off
			// on the wire by the deadline: never plainly failed.
			cut := 0
			for _, r := range srv.Accepted(wechat.PathCustomSend) {
				res := res.get(byCall[r.OpenID+"/"+r.Custom.Text.Content])[0]
				switch {
				case res.Delivered:
				case res.Reason == wechat.ReasonShutdownInFlight:
					cut++
				default:
					t.Errorf("%s/%s accepted by WeChat but reported %q", r.OpenID, r.Custom.Text.Content, res.Reason)
				}
			}
			st := s.Stats()
			if st.Delivered != int64(delivered) || st.Delivered+st.Failed != int64(len(ids)) ||
				len(srv.Accepted(wechat.PathCustomSend)) != delivered+cut || cut > 4 || st.Queued != 0 || st.InFlight != 0 {
				t.Errorf("delivered %d, cut off %d (4 workers), fake accepted %d, of %d; stats %+v",
					delivered, cut, len(srv.Accepted(wechat.PathCustomSend)), len(ids), st)
			}
			if tt.name == "drained" && st.Retried == 0 {
				t.Error("no retries: the test lost its point")
			}
		})
	}
}
