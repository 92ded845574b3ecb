package wechat

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMessageRejects(t *testing.T) {
	const ok = "<xml><MsgType>text</MsgType></xml>"
	tests := []struct {
		name string
		body string
		want error
	}{
		{"billion laughs", `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><xml><Content>&lol2;</Content></xml>`, ErrDoctype},
		{"external entity", `<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><Content>&xxe;</Content></xml>`, ErrDoctype},
		{"bare DOCTYPE", `<!DOCTYPE xml><xml><MsgType>text</MsgType></xml>`, ErrDoctype},
		{"lower-case doctype", `<!doctype xml><xml/>`, ErrDoctype},
		{"ENTITY without DOCTYPE", `<!ENTITY a "b"><xml/>`, ErrDoctype},
		{"DOCTYPE inside the root", `<xml><!DOCTYPE x><MsgType>text</MsgType></xml>`, ErrDoctype},
		{"DOCTYPE after the root", ok + `<!DOCTYPE x>`, ErrDoctype},
		{"empty body", ``, ErrMalformed},
		{"whitespace only", " \n\t", ErrMalformed},
		{"comment only", "<!-- x -->", ErrMalformed},
		{"root is not xml", `<message><MsgType>text</MsgType></message>`, ErrMalformed},
		{"root is XML in capitals", `<XML><MsgType>text</MsgType></XML>`, ErrMalformed},
		{"prefixed root", `<a:xml xmlns:a="urn:a"><MsgType>text</MsgType></a:xml>`, ErrMalformed},
		{"two roots", ok + ok, ErrMalformed},
		{"text before the root", "hello" + ok, ErrMalformed},
		{"text after the root", ok + "hello", ErrMalformed},
		{"unclosed root", `<xml><MsgType>text</MsgType>`, ErrMalformed},
		{"mismatched tags", `<xml><MsgType>text</Content></xml>`, ErrMalformed},
		{"undefined entity", `<xml><Content>&nbsp;</Content></xml>`, ErrMalformed},
		{"unterminated CDATA", `<xml><Content><![CDATA[abc</Content></xml>`, ErrMalformed},
		{"CreateTime not a number", `<xml><CreateTime>yesterday</CreateTime></xml>`, ErrMalformed},
		{"CreateTime beyond int64", `<xml><CreateTime>99999999999999999999</CreateTime></xml>`, ErrMalformed},
		{"GBK declared", `<?xml version="1.0" encoding="GBK"?><xml/>`, ErrMalformed},
		{"invalid UTF-8", "<xml><Content>\xff\xfe</Content></xml>", ErrMalformed},
		{"NUL character", "<xml><Content>a\x00b</Content></xml>", ErrMalformed},
		{"JSON", `{"MsgType":"text"}`, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMessage([]byte(tt.body))
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseMessage = %+v, %v; want %v", m, err, tt.want)
			}
			if m != nil {
				t.Errorf("ParseMessage returned a message with its error")
			}
		})
	}
}

func TestParseMessageAccepts(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		check func(t *testing.T, m *Message)
	}{
		{"declaration, comments and whitespace around the root",
			"\n<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- from WeChat -->\n<xml><MsgType>text</MsgType><Content>hi</Content></xml>\n<!-- end -->\n",
			func(t *testing.T, m *Message) { wantField(t, "Content", m.Content, "hi") }},
		{"MsgType and Event trimmed",
			"<xml><MsgType>\n  <![CDATA[ event ]]>\n</MsgType><Event> CLICK\t</Event></xml>",
			func(t *testing.T, m *Message) {
				wantField(t, "MsgType", m.MsgType, "event")
				wantField(t, "Event", m.Event, "CLICK")
			}},
		{"Content kept exactly, spaces and newlines included",
			"<xml><MsgType>text</MsgType><Content><![CDATA[  two\nlines  ]]></Content></xml>",
			func(t *testing.T, m *Message) { wantField(t, "Content", m.Content, "  two\nlines  ") }},
		{"predefined entities and character references",
			"<xml><Content>a &lt;b&gt; &amp; &quot;c&quot; &#20320;&#x597D;</Content></xml>",
			func(t *testing.T, m *Message) { wantField(t, "Content", m.Content, `a <b> & "c" 你好`) }},
		{"CDATA split around ]]>",
			"<xml><Content><![CDATA[x]]]]><![CDATA[>y]]></Content></xml>",
			func(t *testing.T, m *Message) { wantField(t, "Content", m.Content, "x]]>y") }},
		{"64-bit MsgId kept as written",
			"<xml><MsgType>text</MsgType><MsgId>18446744073709551615</MsgId></xml>",
			func(t *testing.T, m *Message) { wantField(t, "MsgId", m.MsgId, "18446744073709551615") }},
		{"MsgId and MsgID are different tags",
			"<xml><MsgId>1</MsgId><MsgID>2</MsgID></xml>",
			func(t *testing.T, m *Message) {
				wantField(t, "MsgId", m.MsgId, "1")
				wantField(t, "MsgID", m.MsgID, "2")
			}},
		{"self-closing and empty elements",
			"<xml><ToUserName/><Encrypt></Encrypt><CreateTime/></xml>",
			func(t *testing.T, m *Message) {
				wantField(t, "ToUserName", m.ToUserName, "")
				if m.CreateTime != 0 {
					t.Errorf("CreateTime = %d, want 0", m.CreateTime)
				}
			}},
		{"CreateTime with surrounding whitespace",
			"<xml><CreateTime> 1732520001\n</CreateTime></xml>",
			func(t *testing.T, m *Message) {
				if m.CreateTime != 1732520001 {
					t.Errorf("CreateTime = %d", m.CreateTime)
				}
			}},
		{"unknown type and tags kept",
			"<xml><MsgType>hologram</MsgType><Beam power=\"9\"><Lens>2</Lens></Beam><Beam/><Zoom>x</Zoom></xml>",
			func(t *testing.T, m *Message) {
				wantField(t, "MsgType", m.MsgType, "hologram")
				if len(m.Unknown) != 3 || m.Unknown[0].XMLName.Local != "Beam" || m.Unknown[2].Value != "x" {
					t.Errorf("Unknown = %+v", m.Unknown)
				}
				if got := strings.Join(m.UnknownTags(), ","); got != "Beam,Zoom" {
					t.Errorf("UnknownTags = %s, want Beam,Zoom", got)
				}
			}},
		{"unknown tags nested in known ones are ignored",
			"<xml><ScanCodeInfo><ScanType>qrcode</ScanType><Extra>1</Extra></ScanCodeInfo></xml>",
			func(t *testing.T, m *Message) {
				if m.ScanCodeInfo == nil || m.ScanCodeInfo.ScanType != "qrcode" {
					t.Errorf("ScanCodeInfo = %+v", m.ScanCodeInfo)
				}
			}},
		{"attributes ignored",
			"<xml lang=\"zh\"><MsgType kind=\"x\">text</MsgType></xml>",
			func(t *testing.T, m *Message) { wantField(t, "MsgType", m.MsgType, "text") }},
		{"safe-mode envelope",
			"<xml><ToUserName><![CDATA[gh_test0000001]]></ToUserName><Encrypt><![CDATA[abc+/=]]></Encrypt></xml>",
			func(t *testing.T, m *Message) {
				wantField(t, "ToUserName", m.ToUserName, "gh_test0000001")
				wantField(t, "Encrypt", m.Encrypt, "abc+/=")
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseMessage([]byte(tt.body))
			if err != nil {
				t.Fatalf("ParseMessage: %v", err)
			}
			tt.check(t, m)
		})
	}
}

func wantField(t *testing.T, name, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %q, want %q", name, got, want)
	}
}
