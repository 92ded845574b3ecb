package wechat_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// Transient failures are retried with backoff until delivered, exactly once.
func TestSenderRetriesTransientFailures(t *testing.T) {
	tests := []struct {
		name         string
		fail         func(*wechattest.Server)
		wantAttempts int
	}{
		{"-1 twice", func(s *wechattest.Server) { s.FailNext(wechat.PathCustomSend, -1, 2) }, 3},
		{"http 502 twice", func(s *wechattest.Server) { s.FailHTTP(wechat.PathCustomSend, 502, 2) }, 3},
		{"http 429 once", func(s *wechattest.Server) { s.FailHTTP(wechat.PathCustomSend, 429, 1) }, 2},
		{"html with status 200 once", func(s *wechattest.Server) { s.FailBody(wechat.PathCustomSend, "<html></html>", 1) }, 2},
		{"timeout once", func(s *wechattest.Server) { s.DelayNext(wechat.PathCustomSend, 5*time.Second, 1) }, 2},
		{"-1 then 503", func(s *wechattest.Server) {
			s.FailNext(wechat.PathCustomSend, -1, 1)
			s.FailHTTP(wechat.PathCustomSend, 503, 1)
		}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeAPI(t)
			// Short enough for the timeout case, long enough for a
			// loaded -race run not to time out (and send twice).
			c := apiClient(srv, nil, func(o *wechat.ClientOptions) { o.Timeout = 500 * time.Millisecond })
			s, res := startSender(t, wechat.SenderOptions{Client: c})
			tt.fail(srv)
			ids, err := s.Enqueue(textOut("u1", "hello"))
			if err != nil {
				t.Fatal(err)
			}
			res.wait(t, 1)
			st, _ := s.Status(ids[0])
			if st.State != wechat.StateDelivered || st.Attempts != tt.wantAttempts {
				t.Errorf("status = %+v, want delivered after %d attempts", st, tt.wantAttempts)
			}
			if got := texts(srv, "u1"); len(got) != 1 {
				t.Errorf("delivered %d times, want once", len(got))
			}
			if got := s.Stats().Retried; got != int64(tt.wantAttempts-1) {
				t.Errorf("Retried = %d, want %d", got, tt.wantAttempts-1)
			}
		})
	}
}

// Retries stop at MaxAttempts, and at MaxRetryTime whatever the attempts.
func TestSenderRetriesAreBounded(t *testing.T) {
	tests := []struct {
		name string
		opts wechat.SenderOptions
		// the attempts must fall in [min, max]
		min, max int
	}{
		{"attempts", wechat.SenderOptions{MaxAttempts: 4}, 4, 4},
		{"time", wechat.SenderOptions{MaxAttempts: 1000, BaseBackoff: 20 * time.Millisecond, MaxBackoff: 40 * time.Millisecond, MaxRetryTime: 200 * time.Millisecond}, 2, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeAPI(t)
			srv.FailNext(wechat.PathCustomSend, -1, 1000)
			tt.opts.Client = apiClient(srv, nil, nil)
			s, res := startSender(t, tt.opts)
			ids, _ := s.Enqueue(textOut("u1", "hello"))
			res.wait(t, 1)
			st, _ := s.Status(ids[0])
			if st.State != wechat.StateFailed || st.ErrCode != -1 || st.Reason != "system busy" {
				t.Errorf("status = %+v, want failed: system busy", st)
			}
			if st.Attempts < tt.min || st.Attempts > tt.max || count(srv, wechat.PathCustomSend) != st.Attempts {
				t.Errorf("attempts = %d (calls %d), want %d..%d", st.Attempts, count(srv, wechat.PathCustomSend), tt.min, tt.max)
			}
		})
	}
}

// Final answers are not retried: one attempt, failed with the errcode.
func TestSenderDoesNotRetryFinalAnswers(t *testing.T) {
	tests := []struct {
		code   int
		reason string
	}{
		{40003, "invalid openid"},
		{43004, "user has not followed"},
		{45008, "too many articles"},
		{45015, "out of window"},
		{45047, "over the count cap"},
		{45002, "content too long"},
		{47001, "malformed data"},
		{48001, "account lacks this API"},
		{40008, "invalid message type"},
		{99999, "errcode 99999: forced failure"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			srv := fakeAPI(t)
			s, res := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil)})
			srv.FailNext(wechat.PathCustomSend, tt.code, 1)
			ids, _ := s.Enqueue(textOut("u1", "hello"))
			res.wait(t, 1)
			st, _ := s.Status(ids[0])
			want := wechat.Status{ID: ids[0], State: wechat.StateFailed, Reason: tt.reason, ErrCode: tt.code, Attempts: 1}
			if st.State != want.State || st.Reason != want.Reason || st.ErrCode != want.ErrCode || st.Attempts != want.Attempts {
				t.Errorf("status = %+v, want %+v", st, want)
			}
			if got := count(srv, wechat.PathCustomSend); got != 1 {
				t.Errorf("calls = %d, want 1", got)
			}
			r := res.get(ids[0])
			if len(r) != 1 || r[0].Delivered || r[0].ErrCode != tt.code {
				t.Errorf("results = %+v", r)
			}
		})
	}
}

// A three-item rule's replies arrive in order, even when the first one
// needs retries; many users at once each keep their own order.
func TestSenderKeepsOrderPerUser(t *testing.T) {
	tests := []struct {
		name         string
		users, items int
		fail         func(*wechattest.Server)
	}{
		{"three items, one user", 1, 3, func(*wechattest.Server) {}},
		{"first item retried", 1, 3, func(s *wechattest.Server) { s.FailNext(wechat.PathCustomSend, -1, 2) }},
		{"30 users, 5 items, busy API", 30, 5, func(s *wechattest.Server) {
			s.SetLatency(wechat.PathCustomSend, time.Millisecond)
			s.FailNext(wechat.PathCustomSend, -1, 10)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeAPI(t)
			tt.fail(srv)
			s, res := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil), Workers: 8, MaxAttempts: 20})
			for i := range tt.items {
				for u := range tt.users {
					if _, err := s.Enqueue(textOut(fmt.Sprintf("user%d", u), fmt.Sprint(i))); err != nil {
						t.Fatal(err)
					}
				}
			}
			res.wait(t, tt.users*tt.items)
			var want []string
			for i := range tt.items {
				want = append(want, fmt.Sprint(i))
			}
			for u := range tt.users {
				if got := texts(srv, fmt.Sprintf("user%d", u)); !reflect.DeepEqual(got, want) {
					t.Errorf("user%d received %v, want %v", u, got, want)
				}
			}
		})
	}
}

// Enqueue accepts all items or none, and says why.
func TestEnqueueAllOrNothing(t *testing.T) {
	srv := fakeAPI(t)
	s := wechat.NewSender(wechat.SenderOptions{Client: apiClient(srv, nil, nil), QueueSize: 3, Logger: slog.New(slog.DiscardHandler)})
	ids, err := s.Enqueue(textOut("a", "1"), wechat.Outgoing{ID: "given", Custom: textTo("a", "2")})
	if err != nil || len(ids) != 2 || ids[1] != "given" || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(ids[0]) {
		t.Fatalf("ids = %v, err = %v", ids, err)
	}
	tests := []struct {
		name  string
		items []wechat.Outgoing
		want  error
	}{
		{"over the queue size", []wechat.Outgoing{textOut("b", "1"), textOut("b", "2")}, wechat.ErrQueueFull},
		{"no message", []wechat.Outgoing{textOut("b", "1"), {}}, wechat.ErrInvalidOutgoing},
		{"both kinds", []wechat.Outgoing{{Custom: textTo("b", "x"), Template: &wechat.TemplateMessage{ToUser: "b", TemplateID: "T"}}}, wechat.ErrInvalidOutgoing},
		{"no touser", []wechat.Outgoing{{Custom: &wechat.CustomMessage{MsgType: "text"}}}, wechat.ErrInvalidOutgoing},
		{"template without id", []wechat.Outgoing{{Template: &wechat.TemplateMessage{ToUser: "b"}}}, wechat.ErrInvalidOutgoing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ids, err := s.Enqueue(tt.items...); !errors.Is(err, tt.want) || ids != nil {
				t.Errorf("Enqueue = %v, %v; want %v", ids, err, tt.want)
			}
		})
	}
	if st := s.Stats(); st.Enqueued != 2 || st.Queued != 2 {
		t.Errorf("stats = %+v, want 2 enqueued and queued", st)
	}
	if st, ok := s.Status("given"); !ok || st.State != wechat.StateQueued || st.OpenID != "a" {
		t.Errorf("status = %+v, %v", st, ok)
	}
	// Shutdown without Start still drains what was accepted.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := texts(srv, "a"); !reflect.DeepEqual(got, []string{"1", "2"}) {
		t.Errorf("delivered %v", got)
	}
	if _, err := s.Enqueue(textOut("a", "3")); !errors.Is(err, wechat.ErrSenderClosed) {
		t.Errorf("after Shutdown: %v, want ErrSenderClosed", err)
	}
}

// kf_account is added to messages that name none, on a copy.
func TestSenderAddsKfAccount(t *testing.T) {
	srv := fakeAPI(t)
	s, res := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil), KfAccount: "kf@acct"})
	plain := textOut("u", "1")
	named := textOut("u", "2")
	named.Custom.CustomService = &wechat.CustomService{KfAccount: "other@acct"}
	_, _ = s.Enqueue(plain, named)
	res.wait(t, 2)
	var got []string
	for _, r := range srv.Accepted(wechat.PathCustomSend) {
		got = append(got, r.Custom.CustomService.KfAccount)
	}
	if !reflect.DeepEqual(got, []string{"kf@acct", "other@acct"}) {
		t.Errorf("kf accounts = %v", got)
	}
	if plain.Custom.CustomService != nil {
		t.Error("the caller's message was changed")
	}
}

// Every outcome is one structured log line with the keys operators
// search by, and no secret.
func TestSenderLogLines(t *testing.T) {
	sink, log := newLog()
	srv := fakeAPI(t)
	c := apiClient(srv, log, nil)
	s, res := startSender(t, wechat.SenderOptions{Client: c, Logger: log})
	srv.FailNext(wechat.PathCustomSend, 43004, 1)
	ids, _ := s.Enqueue(textOut("u-fail", "a"), textOut("u-fail", "b"))
	res.wait(t, 2)
	failed, delivered := sink.lines(t, "message failed"), sink.lines(t, "message delivered")
	if len(failed) != 1 || len(delivered) != 1 {
		t.Fatalf("failed %d, delivered %d lines; want 1 and 1:\n%s", len(failed), len(delivered), sink)
	}
	want := map[string]any{"id": ids[0], "openid": "u-fail", "msg_id": "in-a", "rule": "test-rule",
		"msgtype": "text", "attempts": 1.0, "errcode": 43004.0, "reason": "user has not followed"}
	for k, v := range want {
		if failed[0][k] != v {
			t.Errorf("failed line %s = %v, want %v", k, failed[0][k], v)
		}
	}
	if delivered[0]["id"] != ids[1] || delivered[0]["openid"] != "u-fail" {
		t.Errorf("delivered line = %v", delivered[0])
	}
	tok, _ := c.Token(context.Background())
	if strings.Contains(sink.String(), tok) || strings.Contains(sink.String(), srv.AppSecret) {
		t.Error("a secret reached the log")
	}
}

// With Typing on, a reply that must wait for a retry shows the indicator
// first, and a reply that finally fails takes it away again.
func TestSenderTypingBeforeDelayedReply(t *testing.T) {
	tests := []struct {
		name  string
		fails int
		want  []string
	}{
		{"sent at once: no typing", 0, []string{"send:0"}},
		{"retried", 1, []string{"send:-1", "typing:Typing", "send:0"}},
		{"failed", 5, []string{"send:-1", "typing:Typing", "send:-1", "typing:CancelTyping"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeAPI(t)
			srv.FailNext(wechat.PathCustomSend, -1, tt.fails)
			s, res := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil), Typing: true, MaxAttempts: 2})
			_, _ = s.Enqueue(textOut("u", "x"))
			res.wait(t, 1)
			var got []string
			for _, r := range srv.Received() {
				if r.API == wechat.PathTyping {
					got = append(got, "typing:"+r.Command)
				} else {
					got = append(got, fmt.Sprintf("send:%d", r.ErrCode))
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("calls = %v, want %v", got, tt.want)
			}
		})
	}
}
