package wechat_test

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/wxreply/wxreply/wechat"
)

// A template message is sent with its Outgoing ID as client_msg_id (so
// WeChat drops a retried duplicate), its msgid is kept, and the
// TEMPLATESENDJOBFINISH event that comes back is logged with what it
// reports on and lands in Status.
func TestSenderTemplateLifecycle(t *testing.T) {
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
			s, res := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil), Logger: log})
			srv.FailNext(wechat.PathTemplateSend, -1, 1)
			ids, err := s.Enqueue(wechat.Outgoing{Rule: "order-shipped", InMsgID: "in-1",
				Template: &wechat.TemplateMessage{ToUser: "u-t", TemplateID: "TPL1", Data: map[string]wechat.TemplateValue{"k": {Value: "v"}}}})
			if err != nil {
				t.Fatal(err)
			}
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
			st, _ := s.Status(ids[0])
			if st.State != wechat.StateDelivered || st.MsgID != sent[0].MsgID || st.MsgType != "template" || st.Attempts != 2 {
				t.Fatalf("status = %+v, want delivered with msgid %d", st, sent[0].MsgID)
			}

			s.TemplateFinished(strconv.FormatInt(st.MsgID, 10), tt.status)
			st, _ = s.Status(ids[0])
			if st.TemplateStatus != tt.status {
				t.Errorf("TemplateStatus = %q, want %q", st.TemplateStatus, tt.status)
			}
			lines := sink.lines(t, "template job finished")
			if len(lines) != 1 {
				t.Fatalf("%d finish lines", len(lines))
			}
			want := map[string]any{"id": ids[0], "openid": "u-t", "rule": "order-shipped", "msg_id": "in-1",
				"template_id": "TPL1", "template_msgid": strconv.FormatInt(st.MsgID, 10), "status": tt.status, "level": tt.level}
			for k, v := range want {
				if lines[0][k] != v {
					t.Errorf("%s = %v, want %v", k, lines[0][k], v)
				}
			}
		})
	}
}

// An event for a msgid the sender never saw is logged, not fatal.
func TestTemplateFinishedUnknownMsgID(t *testing.T) {
	sink, log := newLog()
	srv := fakeAPI(t)
	s, _ := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil), Logger: log})
	s.TemplateFinished("123", "success")
	if got := sink.lines(t, "template job finished for an unknown msgid"); len(got) != 1 || got[0]["template_msgid"] != "123" {
		t.Errorf("lines = %v", got)
	}
	if _, ok := s.Status("123"); ok {
		t.Error("a status appeared for an unknown message")
	}
}
