package wechat

import (
	"slices"
	"testing"
)

func TestMessageEventMethods(t *testing.T) {
	tests := []struct {
		name      string
		m         Message
		isEvent   bool
		eventName string
		scene     string
		opens     bool
	}{
		{"text", Message{MsgType: "text", Content: "hi"}, false, "", "", true},
		{"image", Message{MsgType: "image"}, false, "", "", true},
		{"voice", Message{MsgType: "voice"}, false, "", "", true},
		{"video", Message{MsgType: "video"}, false, "", "", true},
		{"shortvideo", Message{MsgType: "shortvideo"}, false, "", "", true},
		{"location", Message{MsgType: "location"}, false, "", "", true},
		{"link", Message{MsgType: "link"}, false, "", "", true},
		{"upper-case TEXT", Message{MsgType: "TEXT"}, false, "", "", true},
		{"unknown message type", Message{MsgType: "channels_live"}, false, "", "", false},
		{"text with a stray Event tag", Message{MsgType: "text", Event: "subscribe", EventKey: "qrscene_1"}, false, "", "", true},
		{"subscribe", Message{MsgType: "event", Event: "subscribe"}, true, "subscribe", "", true},
		{"subscribe through QR code", Message{MsgType: "event", Event: "subscribe", EventKey: "qrscene_123"}, true, "subscribe", "123", true},
		{"subscribe with a string scene", Message{MsgType: "event", Event: "subscribe", EventKey: "qrscene_spring_sale"}, true, "subscribe", "spring_sale", true},
		{"subscribe with an empty scene", Message{MsgType: "event", Event: "subscribe", EventKey: "qrscene_"}, true, "subscribe", "", true},
		{"subscribe with an unprefixed key", Message{MsgType: "event", Event: "subscribe", EventKey: "123"}, true, "subscribe", "", true},
		{"SUBSCRIBE in capitals", Message{MsgType: "EVENT", Event: "SUBSCRIBE", EventKey: "qrscene_9"}, true, "SUBSCRIBE", "9", true},
		{"unsubscribe", Message{MsgType: "event", Event: "unsubscribe", EventKey: "qrscene_1"}, true, "unsubscribe", "", false},
		{"SCAN", Message{MsgType: "event", Event: "SCAN", EventKey: "123"}, true, "SCAN", "123", true},
		{"scan in lower case", Message{MsgType: "event", Event: "scan", EventKey: "qrscene_123"}, true, "scan", "qrscene_123", true},
		{"LOCATION", Message{MsgType: "event", Event: "LOCATION"}, true, "LOCATION", "", false},
		{"CLICK", Message{MsgType: "event", Event: "CLICK", EventKey: "K"}, true, "CLICK", "", true},
		{"click in lower case", Message{MsgType: "event", Event: "click", EventKey: "K"}, true, "click", "", true},
		{"VIEW", Message{MsgType: "event", Event: "VIEW", EventKey: "https://example.com"}, true, "VIEW", "", false},
		{"scancode_push", Message{MsgType: "event", Event: "scancode_push"}, true, "scancode_push", "", true},
		{"scancode_waitmsg", Message{MsgType: "event", Event: "scancode_waitmsg"}, true, "scancode_waitmsg", "", true},
		{"pic_sysphoto", Message{MsgType: "event", Event: "pic_sysphoto"}, true, "pic_sysphoto", "", false},
		{"location_select", Message{MsgType: "event", Event: "location_select"}, true, "location_select", "", false},
		{"view_miniprogram", Message{MsgType: "event", Event: "view_miniprogram"}, true, "view_miniprogram", "", false},
		{"TEMPLATESENDJOBFINISH", Message{MsgType: "event", Event: "TEMPLATESENDJOBFINISH", MsgID: "1"}, true, "TEMPLATESENDJOBFINISH", "", false},
		{"MASSSENDJOBFINISH", Message{MsgType: "event", Event: "MASSSENDJOBFINISH", MsgID: "1"}, true, "MASSSENDJOBFINISH", "", false},
		{"subscribe_msg_popup_event", Message{MsgType: "event", Event: "subscribe_msg_popup_event"}, true, "subscribe_msg_popup_event", "", false},
		{"unknown event", Message{MsgType: "event", Event: "user_info_modified"}, true, "user_info_modified", "", false},
		{"event without a name", Message{MsgType: "event"}, true, "", "", false},
		{"no MsgType", Message{}, false, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.m.IsEvent(); got != tt.isEvent {
				t.Errorf("IsEvent = %v, want %v", got, tt.isEvent)
			}
			if got := tt.m.EventName(); got != tt.eventName {
				t.Errorf("EventName = %q, want %q", got, tt.eventName)
			}
			if got := tt.m.Scene(); got != tt.scene {
				t.Errorf("Scene = %q, want %q", got, tt.scene)
			}
			if got := tt.m.OpensWindow(); got != tt.opens {
				t.Errorf("OpensWindow = %v, want %v", got, tt.opens)
			}
		})
	}
}

func TestDedupeKey(t *testing.T) {
	click := func(key string) Message {
		return Message{MsgType: "event", Event: "CLICK", FromUserName: "oU1", CreateTime: 1732520014, EventKey: key}
	}
	tests := []struct {
		name string
		m    Message
		want string
	}{
		{"text", Message{MsgType: "text", MsgId: "24812345678900001", FromUserName: "oU1", CreateTime: 1}, "msg:24812345678900001"},
		{"unknown type with MsgId", Message{MsgType: "channels_live", MsgId: "7"}, "msg:7"},
		{"message without MsgId", Message{MsgType: "text", FromUserName: "oU1", CreateTime: 5}, "msg:oU1:5:text"},
		{"subscribe", Message{MsgType: "event", Event: "subscribe", FromUserName: "oU1", CreateTime: 1732520009}, "evt:oU1:1732520009:subscribe"},
		{"subscribe through QR code", Message{MsgType: "event", Event: "subscribe", FromUserName: "oU1", CreateTime: 9, EventKey: "qrscene_123"}, "evt:oU1:9:subscribe:qrscene_123"},
		{"CLICK", click("V1001"), "evt:oU1:1732520014:CLICK:V1001"},
		{"TEMPLATESENDJOBFINISH", Message{MsgType: "event", Event: "TEMPLATESENDJOBFINISH", FromUserName: "oU1", CreateTime: 23, MsgID: "2002288332"}, "evt:oU1:23:TEMPLATESENDJOBFINISH:2002288332"},
		{"MASSSENDJOBFINISH", Message{MsgType: "event", Event: "MASSSENDJOBFINISH", FromUserName: "oA", CreateTime: 25, MsgID: "1000001625"}, "evt:oA:25:MASSSENDJOBFINISH:1000001625"},
		{"event key ignored for messages", Message{MsgType: "text", MsgId: "3", EventKey: "x"}, "msg:3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.m.DedupeKey(); got != tt.want {
				t.Errorf("DedupeKey = %q, want %q", got, tt.want)
			}
		})
	}

	// What the key is for: retries share it, distinct callbacks do not.
	a, b := click("A"), click("B")
	if a.DedupeKey() == b.DedupeKey() {
		t.Errorf("two different clicks in the same second share key %q", a.DedupeKey())
	}
	tmpl1 := Message{MsgType: "event", Event: "TEMPLATESENDJOBFINISH", FromUserName: "oU1", CreateTime: 1, MsgID: "1"}
	tmpl2 := tmpl1
	tmpl2.MsgID = "2"
	if tmpl1.DedupeKey() == tmpl2.DedupeKey() {
		t.Errorf("two template results in the same second share key %q", tmpl1.DedupeKey())
	}
	retry := a
	if retry.DedupeKey() != a.DedupeKey() {
		t.Errorf("a retry got another key")
	}
}

func TestUnknownTags(t *testing.T) {
	el := func(name string) UnknownElement {
		var u UnknownElement
		u.XMLName.Local = name
		return u
	}
	tests := []struct {
		name    string
		unknown []UnknownElement
		want    []string
	}{
		{"none", nil, nil},
		{"one", []UnknownElement{el("MediaId16K")}, []string{"MediaId16K"}},
		{"repeated, in first-seen order", []UnknownElement{el("B"), el("A"), el("B"), el("C"), el("A")}, []string{"B", "A", "C"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Message{Unknown: tt.unknown}
			if got := m.UnknownTags(); !slices.Equal(got, tt.want) {
				t.Errorf("UnknownTags = %q, want %q", got, tt.want)
			}
		})
	}
}
