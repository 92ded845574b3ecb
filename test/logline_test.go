package test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestOneLogLinePerCallback proves that a callback costs one log line,
// "callback", that says what an operator greps for: the sender, the
// message, the rules that answered, the outcome, the status and latency;
// and that no other line is written for it.
func TestOneLogLinePerCallback(t *testing.T) {
	h := newHarness(t, harnessOptions{store: "dir"})
	location := []byte(`<xml><ToUserName><![CDATA[gh_test0000001]]></ToUserName><FromUserName><![CDATA[oTEST_user_0042]]></FromUserName>` +
		`<CreateTime>1700000042</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[LOCATION]]></Event>` +
		`<Latitude>23.1</Latitude><Longitude>113.3</Longitude><Precision>119.3</Precision></xml>`)
	for _, body := range [][]byte{text("oTEST_user_0041", "hi", 941001), location, text("oTEST_user_0041", "hi", 941001)} {
		if code, answer := h.post(t, body); code != 200 || answer != "success" {
			t.Fatalf("answered %d %q", code, answer)
		}
	}
	h.waitDelivered(t, 1)
	h.idle(t)

	var callbacks []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(h.logs.String()), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		switch e["msg"] {
		case "callback":
			callbacks = append(callbacks, e)
		case "http request", "rules matched", "no rule matched":
			t.Errorf("a line of its own for part of a callback: %s", l)
		}
	}
	want := []map[string]any{
		{"openid": "oTEST_user_0041", "msg_type": "text", "msg_id": "941001", "rule": "greeting", "replies": 1.0, "outcome": "answered"},
		{"openid": "oTEST_user_0042", "msg_type": "event", "event": "LOCATION", "msg_id": "evt:oTEST_user_0042:1700000042:LOCATION", "outcome": "no_rule"},
		{"openid": "oTEST_user_0041", "msg_type": "text", "msg_id": "941001", "rule": "greeting", "replies": 1.0, "outcome": "retry"},
	}
	if len(callbacks) != len(want) {
		t.Fatalf("%d callback lines for %d callbacks:\n%s", len(callbacks), len(want), h.logs.String())
	}
	for i, w := range want {
		got := callbacks[i]
		for k, v := range w {
			if got[k] != v {
				t.Errorf("callback %d: %s = %v, want %v (line %v)", i, k, got[k], v, got)
			}
		}
		for _, k := range []string{"status", "latency", "request_id", "remote_ip"} {
			if _, ok := got[k]; !ok {
				t.Errorf("callback %d: no %s (line %v)", i, k, got)
			}
		}
		if got["status"] != 200.0 || got["level"] != "INFO" {
			t.Errorf("callback %d: status %v at %v, want 200 at INFO", i, got["status"], got["level"])
		}
		if _, ok := w["rule"]; !ok && got["rule"] != nil {
			t.Errorf("callback %d: rule %v, want none", i, got["rule"])
		}
	}
	if code, _ := h.post(t, []byte("<xml><Foo>1</Foo></xml>")); code != 400 {
		t.Fatalf("a body that is no callback answered %d", code)
	}
	last := h.logs.lines(`"msg":"callback"`, `"status":400`)
	if len(last) != 1 || !strings.Contains(last[0], `"outcome":"refused"`) || !strings.Contains(last[0], `"level":"WARN"`) {
		t.Errorf("the refused callback's line: %s", fmt.Sprint(last))
	}
}
