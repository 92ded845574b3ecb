package rules

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// fakeSender records what a Responder hands it and fails Enqueue with err.
type fakeSender struct {
	err      error
	enqueued [][]wechat.Outgoing
	finished []string // "msgID status"
}

func (f *fakeSender) Enqueue(items ...wechat.Outgoing) ([]string, error) {
	f.enqueued = append(f.enqueued, items)
	if f.err != nil {
		return nil, f.err
	}
	ids := make([]string, len(items))
	for i := range ids {
		ids[i] = fmt.Sprintf("id-%d", i)
	}
	return ids, nil
}

func (f *fakeSender) TemplateFinished(msgID, status string) {
	f.finished = append(f.finished, msgID+" "+status)
}

// fakeWindow records every touch as "openid@unix".
type fakeWindow struct{ touched []string }

func (f *fakeWindow) Touch(openid string, at time.Time) {
	f.touched = append(f.touched, fmt.Sprintf("%s@%d", openid, at.Unix()))
}

const responderRules = `
rules:
  - name: hello
    match: {text: {equals: hello}}
    reply: [{text: one}, {text: two}]
  - name: hours
    match: {text: {equals: hours}}
    passive: true
    reply: [{text: "9-21"}]
  - name: hours-and-more
    match: {text: {equals: hours+}}
    passive: true
    reply: [{text: "9-21"}, {text: more}]
  - name: welcome
    match: {event: subscribe}
    reply: [{text: welcome}]
  - name: clicked
    match: {event: [CLICK, VIEW, LOCATION, unsubscribe]}
    reply: [{text: clicked}]
  - name: job-done
    match: {event: TEMPLATESENDJOBFINISH}
`

func TestResponder(t *testing.T) {
	set := mustParse(t, responderRules)
	now := time.Unix(1700000000, 0)
	touch := testUser + "@1700000000"
	jobDone := &wechat.Message{FromUserName: testUser, MsgType: "event", Event: "TEMPLATESENDJOBFINISH", MsgID: "200228332", Status: "failed:user block"}
	jobDoneLower := &wechat.Message{FromUserName: testUser, MsgType: "event", Event: "templatesendjobfinish", MsgID: "7", Status: "success"}

	tests := []struct {
		name      string
		msg       *wechat.Message
		sendErr   error
		touched   []string
		finished  []string
		enqueued  []string // text of each reply handed to Enqueue, in one call
		passive   string
		logs      []string // substrings of the log
		failedLog int      // "reply failed" lines
	}{
		{name: "text opens the window and queues the replies", msg: textMsg("hello"),
			touched: []string{touch}, enqueued: []string{"one", "two"},
			logs: []string{`"msg":"rules matched"`, `"rule":"hello"`, `"replies":2`, `"msg_id":"1001"`}},
		{name: "voice opens the window", msg: voiceMsg("nothing"), touched: []string{touch},
			logs: []string{`"msg":"no rule matched"`}},
		{name: "subscribe opens the window", msg: eventMsg("subscribe", ""), touched: []string{touch}, enqueued: []string{"welcome"}},
		{name: "SCAN opens the window", msg: eventMsg("SCAN", "1"), touched: []string{touch}},
		{name: "CLICK opens the window", msg: eventMsg("CLICK", "K"), touched: []string{touch}, enqueued: []string{"clicked"}},
		{name: "VIEW does not", msg: eventMsg("VIEW", "https://example.com"), enqueued: []string{"clicked"}},
		{name: "LOCATION does not", msg: eventMsg("LOCATION", ""), enqueued: []string{"clicked"}},
		{name: "unsubscribe does not", msg: eventMsg("unsubscribe", ""), enqueued: []string{"clicked"}},
		{name: "TEMPLATESENDJOBFINISH completes the delivery report", msg: jobDone,
			finished: []string{"200228332 failed:user block"}, logs: []string{`"rule":"job-done"`, `"msg_id":"200228332"`}},
		{name: "the event name in any case", msg: jobDoneLower, finished: []string{"7 success"}},
		{name: "passive only: nothing queued", msg: textMsg("hours"), touched: []string{touch}, passive: "9-21",
			logs: []string{`"passive":true`}},
		{name: "passive and the rest queued", msg: textMsg("hours+"), touched: []string{touch}, passive: "9-21", enqueued: []string{"more"}},
		{name: "queue full: each reply logged with the reason", msg: textMsg("hello"), sendErr: wechat.ErrQueueFull,
			touched: []string{touch}, enqueued: []string{"one", "two"}, failedLog: 2,
			logs: []string{`"msg":"reply failed"`, `"reason":"queue full"`, `"state":"failed"`, `"rule":"hello"`, `"openid":"oUSER"`, `"msg_id":"1001"`}},
		{name: "closed sender: the error is the reason", msg: textMsg("hello"), sendErr: wechat.ErrSenderClosed,
			touched: []string{touch}, enqueued: []string{"one", "two"}, failedLog: 2,
			logs: []string{`"reason":"not queued: ` + wechat.ErrSenderClosed.Error() + `"`}},
		{name: "a wrapped queue-full error", msg: textMsg("hello"), sendErr: fmt.Errorf("lane: %w", wechat.ErrQueueFull),
			touched: []string{touch}, enqueued: []string{"one", "two"}, failedLog: 2, logs: []string{`"reason":"queue full"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sender := &fakeSender{err: tt.sendErr}
			window := &fakeWindow{}
			logger, logs := logBuffer()
			r := &Responder{Rules: set, Sender: sender, Window: window, Logger: logger, Now: func() time.Time { return now }}

			passive := r.Respond(context.Background(), tt.msg)

			if !slices.Equal(window.touched, tt.touched) {
				t.Errorf("window touched %q, want %q", window.touched, tt.touched)
			}
			if !slices.Equal(sender.finished, tt.finished) {
				t.Errorf("TemplateFinished %q, want %q", sender.finished, tt.finished)
			}
			var enqueued []string
			switch len(sender.enqueued) {
			case 0:
			case 1:
				for _, o := range sender.enqueued[0] {
					enqueued = append(enqueued, o.Custom.Text.Content)
					if o.Custom.ToUser != testUser || o.InMsgID != msgIDOf(tt.msg) || o.Rule == "" {
						t.Errorf("outgoing %+v: want touser, InMsgID and Rule set", o)
					}
				}
			default:
				t.Errorf("Enqueue called %d times, want once with every reply", len(sender.enqueued))
			}
			if !slices.Equal(enqueued, tt.enqueued) {
				t.Errorf("enqueued %q, want %q", enqueued, tt.enqueued)
			}
			got := ""
			if passive != nil {
				got = passive.Text.Content
			}
			if got != tt.passive {
				t.Errorf("passive %q, want %q", got, tt.passive)
			}
			out := logs.String()
			for _, want := range tt.logs {
				if !strings.Contains(out, want) {
					t.Errorf("log lacks %s:\n%s", want, out)
				}
			}
			if n := strings.Count(out, `"msg":"reply failed"`); n != tt.failedLog {
				t.Errorf("%d reply failed lines, want %d:\n%s", n, tt.failedLog, out)
			}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if !json.Valid([]byte(line)) {
					t.Errorf("log line is not one JSON event: %s", line)
				}
			}
		})
	}
}

// A Responder without a Window or Logger still answers, and logs to
// slog.Default().
func TestResponderDefaults(t *testing.T) {
	logger, logs := logBuffer()
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(logger)
	sender := &fakeSender{}
	r := &Responder{Rules: mustParse(t, responderRules), Sender: sender}
	if p := r.Respond(context.Background(), textMsg("hours")); p == nil || p.Text.Content != "9-21" {
		t.Errorf("passive = %+v", p)
	}
	r.Respond(context.Background(), textMsg("hello"))
	if p := r.Respond(context.Background(), nil); p != nil {
		t.Errorf("Respond(nil) = %+v, want nothing", p)
	}
	if len(sender.enqueued) != 1 || len(sender.enqueued[0]) != 2 {
		t.Errorf("enqueued %+v, want the two replies", sender.enqueued)
	}
	if !strings.Contains(logs.String(), `"rule":"hello"`) {
		t.Errorf("nothing logged to slog.Default(): %s", logs)
	}
}
