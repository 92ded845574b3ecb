package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// Transient failures are retried with backoff until delivered, exactly once.
func TestRetriesTransientFailures(t *testing.T) {
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
			c := apiClient(t, srv, nil, func(o *wechat.ClientOptions) { o.Timeout = 500 * time.Millisecond })
			e, res := startEngine(t, delivery.Options{Client: c})
			tt.fail(srv)
			ids := accept(t, e, textOut("u1", "hello"))
			res.wait(t, 1)
			st := status(t, e, ids[0])
			if st.State != store.StateDelivered || st.Attempts != tt.wantAttempts {
				t.Errorf("status = %+v, want delivered after %d attempts", st, tt.wantAttempts)
			}
			if r := res.get(ids[0]); len(r) != 1 || !r[0].Delivered || r[0].Attempts != tt.wantAttempts {
				t.Errorf("results = %+v", r)
			}
			if got := texts(srv, "u1"); len(got) != 1 {
				t.Errorf("delivered %d times, want once", len(got))
			}
			if s := e.Stats(); s.Retried != int64(tt.wantAttempts-1) || s.Delivered != 1 || s.Failed != 0 {
				t.Errorf("stats = %+v, want %d retried, 1 delivered", s, tt.wantAttempts-1)
			}
		})
	}
}

// Retrying ends at MaxAge after acceptance, on the engine's clock: the
// item fails with its last reason, and the retries made are the calls.
// With every backoff at most a minute, a clock moved a minute per retry
// and a MaxAge of two minutes allow exactly the tries at 0, 1 and 2
// minutes (a third retry would be due past MaxAge).
func TestRetriesEndAtMaxAge(t *testing.T) {
	tests := []struct {
		name   string
		fail   func(*wechattest.Server)
		reason string
		code   int
	}{
		{"system busy", func(s *wechattest.Server) { s.FailNext(wechat.PathCustomSend, -1, 1000) }, "system busy", -1},
		{"http 503", func(s *wechattest.Server) { s.FailHTTP(wechat.PathCustomSend, 503, 1000) }, "http status 503", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeAPI(t)
			tt.fail(srv)
			clk := newClock()
			e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), Now: clk.Now,
				BaseBackoff: time.Minute, MaxBackoff: time.Minute, MaxAge: 2 * time.Minute, Lease: time.Hour})
			ids := accept(t, e, textOut("u1", "hello"))
			driveRetries(t, e, clk, res, ids[0], time.Minute)
			st := status(t, e, ids[0])
			if st.State != store.StateFailed || st.ErrCode != tt.code || st.Reason != tt.reason || st.Attempts != 3 {
				t.Errorf("status = %+v, want failed: %s after 3 attempts", st, tt.reason)
			}
			if got := count(srv, wechat.PathCustomSend); got != 3 {
				t.Errorf("calls = %d, want 3", got)
			}
			if s := e.Stats(); s.Retried != 2 || s.Failed != 1 {
				t.Errorf("stats = %+v", s)
			}
		})
	}
}

// Final answers are not retried: one attempt, failed with the errcode.
func TestFinalAnswersAreNotRetried(t *testing.T) {
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
			e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil)})
			srv.FailNext(wechat.PathCustomSend, tt.code, 1)
			ids := accept(t, e, textOut("u1", "hello"))
			res.wait(t, 1)
			st := status(t, e, ids[0])
			if st.State != store.StateFailed || st.Reason != tt.reason || st.ErrCode != tt.code || st.Attempts != 1 {
				t.Errorf("status = %+v, want failed: %s (%d) after 1 attempt", st, tt.reason, tt.code)
			}
			if got := count(srv, wechat.PathCustomSend); got != 1 {
				t.Errorf("calls = %d, want 1", got)
			}
			r := res.get(ids[0])
			if len(r) != 1 || r[0].Delivered || r[0].ErrCode != tt.code || r[0].Reason != tt.reason || r[0].Err == nil {
				t.Errorf("results = %+v", r)
			}
			if s := e.Stats(); s.Failed != 1 || s.Retried != 0 {
				t.Errorf("stats = %+v", s)
			}
		})
	}
}

// A three-item rule's replies arrive in order, even when the first one
// needs retries; many users at once each keep their own order.
func TestOrderPerUser(t *testing.T) {
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
			e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), InFlight: 8})
			for i := range tt.items {
				for u := range tt.users {
					accept(t, e, textOut(fmt.Sprintf("user%d", u), fmt.Sprint(i)))
				}
			}
			res.wait(t, tt.users*tt.items)
			for u := range tt.users {
				if got := texts(srv, fmt.Sprintf("user%d", u)); !reflect.DeepEqual(got, seq(tt.items)) {
					t.Errorf("user%d received %v, want %v", u, got, seq(tt.items))
				}
			}
			// OnResult is called from the send, just before its slot is freed.
			waitFor(t, "the sends to end", func() bool { return e.Stats().InFlight == 0 })
			if s := e.Stats(); s.Delivered != int64(tt.users*tt.items) || s.Failed != 0 {
				t.Errorf("stats = %+v", s)
			}
		})
	}
}

// Accept records all items or none, and says why; it needs no running
// engine, and after Shutdown it refuses items.
func TestAcceptAllOrNothing(t *testing.T) {
	srv := fakeAPI(t)
	st := memStore(t)
	c := apiClient(t, srv, nil, nil)
	e, _ := newEngine(t, delivery.Options{Client: c, Store: st}, nil)
	ids := accept(t, e, textOut("a", "1"), wechat.Outgoing{ID: "given", Custom: textTo("a", "2")})
	if ids[1] != "given" || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(ids[0]) {
		t.Fatalf("ids = %v", ids)
	}
	tests := []struct {
		name  string
		items []wechat.Outgoing
	}{
		{"no message", []wechat.Outgoing{textOut("b", "1"), {}}},
		{"both kinds", []wechat.Outgoing{{Custom: textTo("b", "x"), Template: &wechat.TemplateMessage{ToUser: "b", TemplateID: "T"}}}},
		{"no touser", []wechat.Outgoing{{Custom: &wechat.CustomMessage{MsgType: "text"}}}},
		{"no msgtype", []wechat.Outgoing{{Custom: &wechat.CustomMessage{ToUser: "b"}}}},
		{"template without id", []wechat.Outgoing{{Template: &wechat.TemplateMessage{ToUser: "b"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if a, err := e.Accept(context.Background(), delivery.Request{Items: tt.items}); !errors.Is(err, delivery.ErrInvalidOutgoing) || a.IDs != nil {
				t.Errorf("Accept = %+v, %v; want ErrInvalidOutgoing", a, err)
			}
		})
	}
	if n, err := e.Pending(context.Background()); err != nil || n != 2 {
		t.Errorf("Pending = %d, %v; want 2", n, err)
	}
	if s := e.Stats(); s.Accepted != 2 {
		t.Errorf("stats = %+v, want 2 accepted", s)
	}
	if got := status(t, e, "given"); got.State != store.StateQueued || got.OpenID != "a" || got.MsgType != "text" {
		t.Errorf("status = %+v", got)
	}
	if _, ok, err := e.Status(context.Background(), "no-such-id"); ok || err != nil {
		t.Errorf("Status of an unknown id: %v, %v", ok, err)
	}

	// Shutdown without Start sends nothing and keeps everything.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Accept(context.Background(), delivery.Request{Items: []wechat.Outgoing{textOut("a", "3")}}); !errors.Is(err, delivery.ErrClosed) {
		t.Errorf("Accept after Shutdown: %v, want ErrClosed", err)
	}
	if n := len(srv.Received()); n != 0 {
		t.Errorf("%d calls from an engine never started", n)
	}

	// The next engine on the store sends them, in order.
	e2, res := startEngine(t, delivery.Options{Client: c, Store: st})
	res.wait(t, 2)
	if got := texts(srv, "a"); !reflect.DeepEqual(got, []string{"1", "2"}) {
		t.Errorf("delivered %v", got)
	}
	if got := status(t, e2, "given"); got.State != store.StateDelivered || got.Attempts != 1 {
		t.Errorf("status = %+v", got)
	}
}

// A callback retried by WeChat is recorded once and answered as the first
// copy was; a push repeated with its Idempotency-Key gets the first IDs,
// and the key reused for another request is refused.
func TestAcceptDuplicates(t *testing.T) {
	srv := fakeAPI(t)
	e, _ := newEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil)}, nil)
	ctx := context.Background()
	first, err := e.Accept(ctx, delivery.Request{Dedupe: "msg-1", Answer: []byte("<xml>1</xml>"), Touch: "u",
		Items: []wechat.Outgoing{textOut("u", "a"), textOut("u", "b")}})
	if err != nil || first.Duplicate || len(first.IDs) != 2 {
		t.Fatalf("first = %+v, %v", first, err)
	}
	again, err := e.Accept(ctx, delivery.Request{Dedupe: "msg-1", Answer: []byte("<xml>2</xml>"), Touch: "u",
		Items: []wechat.Outgoing{textOut("u", "a"), textOut("u", "b")}})
	if err != nil || !again.Duplicate || string(again.Answer) != "<xml>1</xml>" {
		t.Errorf("retry = %+v, %v; want the first answer", again, err)
	}

	push := delivery.Request{IdemKey: "key-1", IdemFingerprint: []byte("fp-1"), Items: []wechat.Outgoing{textOut("v", "x")}}
	p1, err := e.Accept(ctx, push)
	if err != nil || p1.Duplicate {
		t.Fatalf("push = %+v, %v", p1, err)
	}
	p2, err := e.Accept(ctx, push)
	if err != nil || !p2.Duplicate || !reflect.DeepEqual(p2.IDs, p1.IDs) {
		t.Errorf("repeated push = %+v, %v; want the ids %v", p2, err, p1.IDs)
	}
	other := push
	other.IdemFingerprint = []byte("fp-2")
	if _, err := e.Accept(ctx, other); !errors.Is(err, store.ErrIdempotencyConflict) {
		t.Errorf("other request with the key: %v, want ErrIdempotencyConflict", err)
	}
	if n, _ := e.Pending(ctx); n != 3 {
		t.Errorf("Pending = %d, want 3", n)
	}
	if s := e.Stats(); s.Accepted != 3 {
		t.Errorf("stats = %+v, want 3 accepted", s)
	}
}

// Options.KfAccount (for pushes: rules add their kf_account themselves)
// is added to messages that name none; a message naming one keeps it.
func TestKfAccount(t *testing.T) {
	srv := fakeAPI(t)
	e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), KfAccount: "kf@acct"})
	plain := textOut("u", "1")
	named := textOut("u", "2")
	named.Custom.CustomService = &wechat.CustomService{KfAccount: "other@acct"}
	accept(t, e, plain, named)
	res.wait(t, 2)
	var got []string
	for _, r := range srv.Accepted(wechat.PathCustomSend) {
		if r.Custom.CustomService == nil {
			got = append(got, "")
			continue
		}
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
func TestLogLines(t *testing.T) {
	sink, log := newLog()
	srv := fakeAPI(t)
	c := apiClient(t, srv, log, nil)
	e, res := startEngine(t, delivery.Options{Client: c, Logger: log})
	srv.FailNext(wechat.PathCustomSend, 43004, 1)
	ids := accept(t, e, textOut("u-fail", "a"), textOut("u-fail", "b"))
	res.wait(t, 2)
	failed, delivered := sink.lines(t, "message failed"), sink.lines(t, "message delivered")
	if len(failed) != 1 || len(delivered) != 1 {
		t.Fatalf("failed %d, delivered %d lines; want 1 and 1:\n%s", len(failed), len(delivered), sink)
	}
	want := map[string]any{"id": ids[0], "openid": "u-fail", "msg_id": "in-a", "rule": "test-rule",
		"msgtype": "text", "attempts": 1.0, "errcode": 43004.0, "reason": "user has not followed", "level": "WARN"}
	for k, v := range want {
		if failed[0][k] != v {
			t.Errorf("failed line %s = %v, want %v", k, failed[0][k], v)
		}
	}
	want = map[string]any{"id": ids[1], "openid": "u-fail", "msg_id": "in-b", "rule": "test-rule",
		"msgtype": "text", "attempts": 1.0, "level": "INFO"}
	for k, v := range want {
		if delivered[0][k] != v {
			t.Errorf("delivered line %s = %v, want %v", k, delivered[0][k], v)
		}
	}
	if _, ok := delivered[0]["duration_ms"]; !ok {
		t.Errorf("delivered line has no duration_ms: %v", delivered[0])
	}
	tok, err := c.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sink.String(), tok) || strings.Contains(sink.String(), srv.AppSecret) {
		t.Error("a secret reached the log")
	}
}

// With Typing on, a reply that must wait for a retry shows the indicator
// first, and a reply that finally fails takes it away again.
func TestTypingBeforeDelayedReply(t *testing.T) {
	tests := []struct {
		name  string
		fails int
		want  []string
	}{
		{"sent at once: no typing", 0, []string{"send:0"}},
		{"retried", 1, []string{"send:-1", "typing:Typing", "send:0"}},
		// Tries at 0, 1 and 2 minutes, then MaxAge: see TestRetriesEndAtMaxAge.
		{"failed", 5, []string{"send:-1", "typing:Typing", "send:-1", "send:-1", "typing:CancelTyping"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeAPI(t)
			srv.FailNext(wechat.PathCustomSend, -1, tt.fails)
			clk := newClock()
			e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), Typing: true, Now: clk.Now,
				BaseBackoff: time.Minute, MaxBackoff: time.Minute, MaxAge: 2 * time.Minute, Lease: time.Hour})
			ids := accept(t, e, textOut("u", "x"))
			driveRetries(t, e, clk, res, ids[0], time.Minute)
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

// A template message never shows the typing indicator, nor takes it away
// when it fails after retries.
func TestTypingNotForTemplates(t *testing.T) {
	srv := fakeAPI(t, wechattest.WithTemplates("TPL1"))
	srv.FailNext(wechat.PathTemplateSend, -1, 1)
	srv.FailNext(wechat.PathTemplateSend, 40037, 1)
	e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), Typing: true})
	ids := accept(t, e, templateOut("u"))
	res.wait(t, 1)
	if st := status(t, e, ids[0]); st.State != store.StateFailed || st.ErrCode != 40037 || st.Attempts != 2 {
		t.Errorf("status = %+v, want failed with 40037 after 2 attempts", st)
	}
	if n := count(srv, wechat.PathTyping); n != 0 {
		t.Errorf("%d typing calls for a template message", n)
	}
}
