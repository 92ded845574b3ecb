package delivery_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// A template message is sent with its item ID as client_msg_id (so
// WeChat drops a retried duplicate), its msgid is kept, and the
// TEMPLATESENDJOBFINISH event that comes back is logged with what it
// reports on and lands in Status.
func TestTemplateLifecycle(t *testing.T) {
	tests := []struct {
		status string
		level  string
	}{
		{"success", "INFO"},
		{"failed:user block", "WARN"},
		{"failed: system failed", "WARN"},
	}
	for _, tt := range tests {
		t.Run(tt.status, func(t *testing.T) {
			sink, log := newLog()
			srv := fakeAPI(t)
			e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), Logger: log})
			srv.FailNext(wechat.PathTemplateSend, -1, 1)
			ids := accept(t, e, templateOut("u-t"))
			res.wait(t, 1)
			sent := srv.Accepted(wechat.PathTemplateSend)
			if len(sent) != 1 {
				t.Fatalf("accepted %d template sends", len(sent))
			}
			for _, r := range srv.Received() {
				var body map[string]any
				_ = json.Unmarshal(r.Body, &body)
				if body["client_msg_id"] != ids[0] {
					t.Errorf("client_msg_id = %v, want %s", body["client_msg_id"], ids[0])
				}
			}
			st := status(t, e, ids[0])
			if st.State != store.StateDelivered || st.MsgID != sent[0].MsgID || st.MsgType != delivery.MsgTypeTemplate || st.Attempts != 2 {
				t.Fatalf("status = %+v, want delivered with msgid %d", st, sent[0].MsgID)
			}
			if r := res.get(ids[0]); len(r) != 1 || r[0].MsgID != sent[0].MsgID {
				t.Errorf("results = %+v", r)
			}
			if d := sink.lines(t, "message delivered"); len(d) != 1 || d[0]["template_msgid"] != float64(sent[0].MsgID) {
				t.Errorf("delivered lines = %v", d)
			}

			if err := e.TemplateFinished(context.Background(), strconv.FormatInt(st.MsgID, 10), tt.status); err != nil {
				t.Fatal(err)
			}
			if st := status(t, e, ids[0]); st.TemplateStatus != tt.status || st.State != store.StateDelivered {
				t.Errorf("status = %+v, want TemplateStatus %q", st, tt.status)
			}
			lines := sink.lines(t, "template job finished")
			if len(lines) != 1 {
				t.Fatalf("%d finish lines", len(lines))
			}
			want := map[string]any{"id": ids[0], "openid": "u-t", "rule": "order-shipped", "msg_id": "in-1",
				"template_msgid": float64(st.MsgID), "status": tt.status, "level": tt.level}
			for k, v := range want {
				if lines[0][k] != v {
					t.Errorf("%s = %v, want %v", k, lines[0][k], v)
				}
			}
		})
	}
}

// A TEMPLATESENDJOBFINISH event that overtakes template/send's answer is
// not lost: it is logged with its message once the answer is in.
func TestTemplateReportBeforeAnswer(t *testing.T) {
	sink, log := newLog()
	var mu sync.Mutex
	var engine *delivery.Engine
	reported := make(chan error, 1)
	srv := fakeAPI(t, wechattest.WithOnReceive(func(r wechattest.Received) {
		if r.API != wechat.PathTemplateSend || r.MsgID == 0 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		// The fake calls this before it writes the answer.
		reported <- engine.TemplateFinished(context.Background(), strconv.FormatInt(r.MsgID, 10), "failed:user block")
	}))
	e, res := newEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), Logger: log}, nil)
	mu.Lock()
	engine = e
	mu.Unlock()
	e.Start()
	out := templateOut("u-t")
	out.Rule, out.InMsgID = "shipped", "in-9"
	ids := accept(t, e, out)
	res.wait(t, 1)
	if err := <-reported; err != nil {
		t.Fatal(err)
	}
	if got := sink.lines(t, "template job finished for an unknown msgid"); len(got) != 1 {
		t.Errorf("early report lines = %v", got)
	}
	lines := sink.lines(t, "template job finished")
	if len(lines) != 1 || lines[0]["id"] != ids[0] || lines[0]["rule"] != "shipped" || lines[0]["msg_id"] != "in-9" ||
		lines[0]["status"] != "failed:user block" || lines[0]["level"] != "WARN" {
		t.Fatalf("finish lines = %v\n%s", lines, sink)
	}
	if st := status(t, e, ids[0]); st.TemplateStatus != "failed:user block" || st.State != store.StateDelivered {
		t.Errorf("status = %+v", st)
	}
}

// An event for a msgid the engine never sent, or one that is not a
// number, is logged, not an error.
func TestTemplateFinishedUnknownMsgID(t *testing.T) {
	sink, log := newLog()
	srv := fakeAPI(t)
	e, _ := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), Logger: log})
	if err := e.TemplateFinished(context.Background(), "123", "success"); err != nil {
		t.Fatal(err)
	}
	if got := sink.lines(t, "template job finished for an unknown msgid"); len(got) != 1 || got[0]["template_msgid"] != 123.0 {
		t.Errorf("lines = %v", got)
	}
	if err := e.TemplateFinished(context.Background(), "abc", "success"); err != nil {
		t.Fatal(err)
	}
	if got := sink.lines(t, "template job finished with a msgid that is not a number"); len(got) != 1 || got[0]["template_msgid"] != "abc" {
		t.Errorf("lines = %v", got)
	}
	if _, ok, _ := e.Status(context.Background(), "123"); ok {
		t.Error("a status appeared for an unknown message")
	}
}
