package rules

import (
	"slices"
	"testing"

	"github.com/wxreply/wxreply/wechat"
)

// matchRules exercises every match key. Each rule has a reply so that
// Decide renders something for it.
const matchRules = `
rules:
  - name: vip
    match: {from: [oVIP1, oVIP2], msgtype: text}
    continue: true
    reply: [{text: vip}]
  - name: greeting
    match: {text: {equals: [hi, hello, 你好]}}
    reply: [{text: hello}]
  - name: order
    match: {text: {regex: '^订单\s*(\d{6,})$'}}
    reply: [{text: "order {{index .Groups 1}}"}]
  - name: help
    match: {text: {prefix: [帮助, help]}}
    reply: [{text: help}]
  - name: survey
    match: {text: {contains: [评价, survey]}}
    reply: [{text: survey}]
  - name: both-text-keys
    match: {text: {prefix: vip, contains: gold}}
    reply: [{text: gold}]
  - name: welcome
    match: {event: subscribe}
    continue: true
    reply: [{text: welcome}]
  - name: spring
    match: {scene: spring}
    reply: [{text: spring}]
  - name: music
    match: {event: CLICK, event_key: V1001_TODAY_MUSIC}
    reply: [{text: music}]
  - name: any-click
    match: {event: click}
    reply: [{text: click}]
  - name: satisfied
    match: {menu_id: "101"}
    reply: [{text: thanks}]
  - name: blocked
    match: {event: TEMPLATESENDJOBFINISH, status: "failed:user block"}
  - name: pictures
    match: {msgtype: [image, shortvideo]}
    reply: [{text: picture}]
default:
  reply: [{text: default}]
`

func TestMatch(t *testing.T) {
	s := mustParse(t, matchRules)
	withMenu := textMsg("满意")
	withMenu.BizMsgMenuID = "101"
	vip := textMsg("hello")
	vip.FromUserName = "oVIP2"
	vipOther := textMsg("whatever")
	vipOther.FromUserName = "oVIP1"
	subscribeQR := eventMsg("subscribe", "qrscene_spring")
	templateDone := &wechat.Message{FromUserName: testUser, MsgType: "event", Event: "TEMPLATESENDJOBFINISH", MsgID: "200228332", Status: "failed:user block"}
	templateOK := &wechat.Message{FromUserName: testUser, MsgType: "event", Event: "TEMPLATESENDJOBFINISH", MsgID: "200228333", Status: "success"}

	tests := []struct {
		name string
		msg  *wechat.Message
		want []string
	}{
		{"equals", textMsg("hello"), []string{"greeting"}},
		{"equals is trimmed", textMsg("  hi \n"), []string{"greeting"}},
		{"equals is case-folded", textMsg("HeLLo"), []string{"greeting"}},
		{"equals is width-folded", textMsg("ＨＥＬＬＯ"), []string{"greeting"}},
		{"equals with ideographic spaces", textMsg("\u3000你好\u3000"), []string{"greeting"}},
		{"equals is a full match", textMsg("hello there"), []string{"default"}},
		{"regex", textMsg("订单 12345678"), []string{"order"}},
		{"regex sees full-width digits as digits", textMsg("订单１２３４５６"), []string{"order"}},
		{"regex that fails", textMsg("订单 12"), []string{"default"}},
		{"prefix", textMsg("Help me"), []string{"help"}},
		{"prefix is only at the start", textMsg("need help"), []string{"default"}},
		{"contains", textMsg("我想评价一下"), []string{"survey"}},
		{"contains, case-folded", textMsg("take the SURVEY"), []string{"survey"}},
		{"all text keys must hold", textMsg("vip gold"), []string{"both-text-keys"}},
		{"one text key is not enough", textMsg("vip silver"), []string{"default"}},
		{"voice matches on Recognition", voiceMsg("你好"), []string{"greeting"}},
		{"voice without recognition is not text", voiceMsg(""), []string{"default"}},
		{"first match wins in file order", textMsg("help survey"), []string{"help"}},
		{"continue goes on to the next match", vip, []string{"vip", "greeting"}},
		{"continue without a later match", vipOther, []string{"vip"}},
		{"event", eventMsg("subscribe", ""), []string{"welcome"}},
		{"scene from subscribe with qrscene_", subscribeQR, []string{"welcome", "spring"}},
		{"scene from SCAN", eventMsg("SCAN", "spring"), []string{"spring"}},
		{"another scene", eventMsg("SCAN", "autumn"), nil},
		{"event names are case-insensitive", eventMsg("click", "V1001_TODAY_MUSIC"), []string{"music"}},
		{"all keys must hold", eventMsg("CLICK", "V1001_OTHER"), []string{"any-click"}},
		{"event_key is not text", eventMsg("VIEW", "help"), nil},
		{"menu_id", withMenu, []string{"satisfied"}},
		{"status", templateDone, []string{"blocked"}},
		{"another status", templateOK, nil},
		{"msgtype, a list means any of", &wechat.Message{FromUserName: testUser, MsgType: "shortvideo", MsgId: "3"}, []string{"pictures"}},
		{"default answers user messages", &wechat.Message{FromUserName: testUser, MsgType: "location", MsgId: "4"}, []string{"default"}},
		{"default never answers events", eventMsg("unsubscribe", ""), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := s.Decide(tt.msg)
			if !slices.Equal(d.Rules, tt.want) {
				t.Errorf("rules = %q, want %q", d.Rules, tt.want)
			}
		})
	}
}

func TestMatchOneStringOrAList(t *testing.T) {
	s := mustParse(t, `
rules:
  - {name: one, match: {event_key: [A]}, reply: [{text: a}]}
  - {name: list, match: {event_key: [B, C]}, reply: [{text: b}]}
  - {name: scalar, match: {event_key: D}, reply: [{text: d}]}
`)
	for key, want := range map[string]string{"A": "one", "B": "list", "C": "list", "D": "scalar"} {
		if got := s.Decide(eventMsg("CLICK", key)).Rules; !slices.Equal(got, []string{want}) {
			t.Errorf("event_key %s: rules = %q, want [%s]", key, got, want)
		}
	}
}

func TestMatchRuleWithoutReplyStopsMatching(t *testing.T) {
	s := mustParse(t, `
rules:
  - {name: record, match: {event: TEMPLATESENDJOBFINISH}}
  - {name: later, match: {event: TEMPLATESENDJOBFINISH}, reply: [{text: x}]}
`)
	d := s.Decide(&wechat.Message{MsgType: "event", Event: "TEMPLATESENDJOBFINISH", Status: "success"})
	if !slices.Equal(d.Rules, []string{"record"}) || len(d.Replies) != 0 {
		t.Errorf("decision = %+v, want rule record and no replies", d)
	}
}

// WeChat writes "failed:user block" but "failed: system failed": a rule
// may spell either with or without the space, in any case.
func TestMatchStatusSpellings(t *testing.T) {
	s := mustParse(t, `
rules:
  - {name: blocked, match: {event: TEMPLATESENDJOBFINISH, status: "failed: user block"}}
  - {name: system, match: {event: TEMPLATESENDJOBFINISH, status: ["failed:system failed"]}}
  - {name: ok, match: {event: TEMPLATESENDJOBFINISH, status: SUCCESS}}
`)
	tests := []struct {
		status string
		want   []string
	}{
		{"failed:user block", []string{"blocked"}},
		{"failed: user block", []string{"blocked"}},
		{"failed: system failed", []string{"system"}},
		{"failed:system failed", []string{"system"}},
		{"Failed:  System   Failed ", []string{"system"}},
		{"success", []string{"ok"}},
		{"failed:user", nil},
		{"failed", nil},
		{"", nil},
	}
	for _, tt := range tests {
		m := &wechat.Message{FromUserName: testUser, MsgType: "event", Event: "TEMPLATESENDJOBFINISH", MsgID: "1", Status: tt.status}
		if got := s.Decide(m).Rules; !slices.Equal(got, tt.want) {
			t.Errorf("status %q: rules %q, want %q", tt.status, got, tt.want)
		}
	}
}

// scene is the QR scene of a follow through a parametric QR code
// (EventKey qrscene_<scene>) and of a scan by a follower (SCAN, EventKey
// <scene>); nothing else has one.
func TestMatchScene(t *testing.T) {
	s := mustParse(t, `
rules:
  - {name: one, match: {scene: ["123", spring_sale]}, reply: [{text: x}]}
`)
	tests := []struct {
		event, key string
		want       []string
	}{
		{"subscribe", "qrscene_123", []string{"one"}},
		{"SUBSCRIBE", "qrscene_spring_sale", []string{"one"}},
		{"SCAN", "123", []string{"one"}},
		{"scan", "spring_sale", []string{"one"}},
		{"subscribe", "123", nil},      // a follow without the prefix is no QR code
		{"subscribe", "qrscene_", nil}, // an empty scene
		{"SCAN", "qrscene_123", nil},   // SCAN has no prefix
		{"CLICK", "123", nil},          // a menu key is no scene
		{"unsubscribe", "qrscene_123", nil},
	}
	for _, tt := range tests {
		if got := s.Decide(eventMsg(tt.event, tt.key)).Rules; !slices.Equal(got, tt.want) {
			t.Errorf("%s %s: rules %q, want %q", tt.event, tt.key, got, tt.want)
		}
	}
	text := textMsg("123")
	text.Event, text.EventKey = "SCAN", "123" // stray tags on a user message
	if got := s.Decide(text).Rules; slices.Contains(got, "one") {
		t.Errorf("a text message matched a scene: %q", got)
	}
}
