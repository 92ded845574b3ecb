package wechat_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// Status forgets finished messages beyond StatusMax, oldest first, so a
// busy day does not fill memory; a message still queued or being sent is
// never forgotten, however many there are.
func TestStatusIsBounded(t *testing.T) {
	const n, keep = 20, 5
	srv := fakeAPI(t)
	s, res := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil), Workers: 1, StatusMax: keep})
	release := srv.Hold(wechat.PathCustomSend)
	defer release()
	var ids []string
	for i := range n {
		got, err := s.Enqueue(textOut(fmt.Sprintf("u%d", i), "x"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got...)
	}
	for _, id := range ids {
		if st, ok := s.Status(id); !ok || (st.State != wechat.StateQueued && st.State != wechat.StateSending) {
			t.Fatalf("%s while queued: %+v, %v", id, st, ok)
		}
	}
	release()
	res.wait(t, n)
	for i, id := range ids {
		st, ok := s.Status(id)
		if want := i >= n-keep; ok != want || (ok && st.State != wechat.StateDelivered) {
			t.Errorf("message %d: known %v (%+v), want known %v", i, ok, st, want)
		}
	}
}

// A TEMPLATESENDJOBFINISH event that overtakes template/send's answer is
// not lost: it is logged with its message once the answer is in.
func TestTemplateReportBeforeAnswer(t *testing.T) {
	sink, log := newLog()
	var mu sync.Mutex
	var sender *wechat.Sender
	srv := fakeAPI(t, wechattest.WithOnReceive(func(r wechattest.Received) {
		if r.API != wechat.PathTemplateSend || r.MsgID == 0 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		// The fake calls this before it writes the answer.
		sender.TemplateFinished(strconv.FormatInt(r.MsgID, 10), "failed:user block")
	}))
	s, res := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil), Logger: log})
	mu.Lock()
	sender = s
	mu.Unlock()
	ids, err := s.Enqueue(wechat.Outgoing{Rule: "shipped", InMsgID: "in-9",
		Template: &wechat.TemplateMessage{ToUser: "u-t", TemplateID: "TPL1", Data: map[string]wechat.TemplateValue{"k": {Value: "v"}}}})
	if err != nil {
		t.Fatal(err)
	}
	res.wait(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for len(sink.lines(t, "template job finished")) == 0 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	lines := sink.lines(t, "template job finished")
	if len(lines) != 1 || lines[0]["id"] != ids[0] || lines[0]["rule"] != "shipped" || lines[0]["status"] != "failed:user block" {
		t.Fatalf("finish lines = %v\n%s", lines, sink)
	}
	if st, _ := s.Status(ids[0]); st.TemplateStatus != "failed:user block" || st.State != wechat.StateDelivered {
		t.Errorf("status = %+v", st)
	}
}
