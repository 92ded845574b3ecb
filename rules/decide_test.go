package rules

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/wxreply/wxreply/wechat"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// sendJSON is the JSON a sender posts: no HTML escaping, so that <a href>
// links in text reach the user as links.
func sendJSON(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// TestRepliesJSON renders every reply item type and compares the message
// with the exact JSON message/custom/send (or template/send) takes.
func TestRepliesJSON(t *testing.T) {
	s, err := Load("testdata/replies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range s.rules {
		t.Run(r.name, func(t *testing.T) {
			content := r.name
			if r.name == "regex-groups" {
				content = "订单 12345678"
			}
			d := s.Decide(textMsg(content))
			if !slices.Equal(d.Rules, []string{r.name}) || len(d.Replies) != 1 {
				t.Fatalf("decision = %+v, want one reply of rule %s", d, r.name)
			}
			out := d.Replies[0]
			if out.Rule != r.name || out.InMsgID != "1001" || out.ID != "" {
				t.Errorf("outgoing Rule=%q InMsgID=%q ID=%q, want %q, 1001 and no ID", out.Rule, out.InMsgID, out.ID, r.name)
			}
			var v any = out.Custom
			if out.Template != nil {
				v = out.Template
				if out.Custom != nil {
					t.Error("both Custom and Template set")
				}
			}
			golden(t, filepath.Join("testdata", "replies", r.name+".json"), sendJSON(t, v))
		})
	}
}

func TestFileIsResolvedAgainstTheRulesFile(t *testing.T) {
	s, err := Load("testdata/replies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := s.Decide(textMsg("image-file"))
	want, _ := filepath.Abs("testdata/pic.png")
	if len(d.Replies) != 1 || d.Replies[0].Custom.Image == nil || d.Replies[0].Custom.Image.File != want {
		t.Fatalf("replies = %+v, want an image with file %s", d.Replies, want)
	}
}

func TestPassive(t *testing.T) {
	s := mustParse(t, `
kf_account: kf@acct
rules:
  - name: first
    match: {text: {contains: hours}}
    passive: true
    continue: true
    reply:
      - text: "9:00-21:00"
      - text: second item
  - name: also-passive
    match: {text: {contains: hours}}
    passive: true
    reply:
      - text: "by the API"
`)
	d := s.Decide(textMsg("opening hours"))
	if d.Passive == nil || d.Passive.Text == nil || d.Passive.Text.Content != "9:00-21:00" {
		t.Fatalf("passive = %+v, want the first item of rule first", d.Passive)
	}
	if d.Passive.ToUser != testUser || d.Passive.MsgType != "text" || d.Passive.CustomService != nil {
		t.Errorf("passive ToUser=%q MsgType=%q CustomService=%v", d.Passive.ToUser, d.Passive.MsgType, d.Passive.CustomService)
	}
	var got []string
	for _, r := range d.Replies {
		got = append(got, r.Rule+":"+r.Custom.Text.Content)
	}
	want := []string{"first:second item", "also-passive:by the API"}
	if !slices.Equal(got, want) {
		t.Errorf("replies = %q, want %q (the passive item is not sent again)", got, want)
	}
}

func TestKfAccountAndRecipients(t *testing.T) {
	s := mustParse(t, `
kf_account: " kf@acct "
rules:
  - name: r
    match: {msgtype: text}
    reply:
      - text: hi
      - template: {template_id: T, data: {first: {value: v}}}
`)
	d := s.Decide(textMsg("x"))
	if len(d.Replies) != 2 {
		t.Fatalf("replies = %+v", d.Replies)
	}
	c, tm := d.Replies[0].Custom, d.Replies[1].Template
	if c.ToUser != testUser || c.CustomService == nil || c.CustomService.KfAccount != "kf@acct" {
		t.Errorf("custom = %+v, want touser %s and kf_account kf@acct", c, testUser)
	}
	if tm.ToUser != testUser {
		t.Errorf("template touser = %q", tm.ToUser)
	}
	if s.KfAccount() != "kf@acct" {
		t.Errorf("KfAccount() = %q", s.KfAccount())
	}
}

func TestInMsgID(t *testing.T) {
	s := mustParse(t, `
rules:
  - {name: any, match: {msgtype: [text, event]}, reply: [{text: x}]}
`)
	finished := &wechat.Message{FromUserName: testUser, MsgType: "event", Event: "TEMPLATESENDJOBFINISH", MsgID: "200228332"}
	tests := []struct {
		msg  *wechat.Message
		want string
	}{
		{textMsg("hi"), "1001"},
		{finished, "200228332"},
		{eventMsg("subscribe", ""), ""},
	}
	for _, tt := range tests {
		d := s.Decide(tt.msg)
		if len(d.Replies) != 1 || d.Replies[0].InMsgID != tt.want {
			t.Errorf("%s: replies %+v, want InMsgID %q", tt.msg.MsgType, d.Replies, tt.want)
		}
	}
}

func TestPickRandom(t *testing.T) {
	src := `
rules:
  - name: music
    match: {event: CLICK}
    pick: random
    reply: [{text: zero}, {text: one}, {text: two}]
  - name: all
    match: {event: VIEW}
    reply: [{text: zero}, {text: one}]
`
	for want, content := range []string{"zero", "one", "two"} {
		var asked []int
		s := mustParse(t, src, WithRand(func(n int) int { asked = append(asked, n); return want }))
		d := s.Decide(eventMsg("CLICK", ""))
		if len(d.Replies) != 1 || d.Replies[0].Custom.Text.Content != content {
			t.Errorf("rand gives %d: replies %+v, want only %q", want, d.Replies, content)
		}
		if !slices.Equal(asked, []int{3}) {
			t.Errorf("intn called with %v, want [3]", asked)
		}
		if d := s.Decide(eventMsg("VIEW", "")); len(d.Replies) != 2 {
			t.Errorf("pick all sent %d replies, want 2", len(d.Replies))
		}
	}
}

func TestTemplatesSeeTheMessage(t *testing.T) {
	s := mustParse(t, `
rules:
  - name: echo
    match: {event: CLICK}
    reply: [{text: "{{.FromUserName}} clicked {{.EventKey}}{{if .Groups}} groups{{end}}"}]
  - name: order
    match: {text: {regex: ['^no match$', '^ORDER-(\d+)$']}}
    reply: [{text: "{{index .Groups 0}} / {{index .Groups 1}}"}]
`)
	if got := s.Decide(eventMsg("CLICK", "K1")).Replies[0].Custom.Text.Content; got != testUser+" clicked K1" {
		t.Errorf("echo = %q", got)
	}
	// Groups come from the first regex that matches, on the trimmed,
	// width-folded text, with the user's case kept.
	if got := s.Decide(textMsg(" order-１２３ ")).Replies[0].Custom.Text.Content; got != "order-123 / 123" {
		t.Errorf("order = %q", got)
	}
}

func TestRenderFailureSkipsThatReply(t *testing.T) {
	logger, logs := logBuffer()
	s := mustParse(t, `
rules:
  - name: broken
    match: {text: {regex: ['^order (\d+)$', '^hello$']}}
    reply:
      - text: "{{index .Groups 1}}"
      - text: "{{.Content}}"
      - text: still sent
  - name: empty
    match: {event: CLICK}
    reply:
      - text: "{{.Content}}"
      - text: still sent
`, WithLogger(logger))
	d := s.Decide(textMsg("hello"))
	var got []string
	for _, r := range d.Replies {
		got = append(got, r.Custom.Text.Content)
	}
	if !slices.Equal(got, []string{"hello", "still sent"}) {
		t.Errorf("replies = %q, want the two that render", got)
	}
	line := logs.String()
	for _, want := range []string{`"rule":"broken"`, `"openid":"oUSER"`, `"msg_id":"1001"`, "index out of range"} {
		if !strings.Contains(line, want) {
			t.Errorf("log %s lacks %s", line, want)
		}
	}
	// The regex with the group matched: nothing fails.
	if d := s.Decide(textMsg("order 12")); len(d.Replies) != 3 || d.Replies[0].Custom.Text.Content != "12" {
		t.Errorf("decision %+v, want the three replies, the first 12", d)
	}
	// An event has no Content: the rendered text is empty, which WeChat
	// would refuse, so it is skipped too.
	logs.Reset()
	d = s.Decide(eventMsg("CLICK", ""))
	if len(d.Replies) != 1 || !strings.Contains(logs.String(), "text.content: required") {
		t.Errorf("replies = %d, log %s; want 1 reply and the empty text logged", len(d.Replies), logs)
	}
}

// Replies are copies: filling one never changes the rule, even when many
// messages are decided at once.
func TestDecideIsSafeForConcurrentUse(t *testing.T) {
	s := mustParse(t, `
rules:
  - name: echo
    match: {msgtype: text}
    reply:
      - text: "{{.Content}}"
      - news: {articles: [{title: "{{.Content}}"}]}
      - msgmenu: {list: [{id: "1", content: "{{.Content}}"}]}
`)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				content := strings.Repeat("x", i+1) + string(rune('a'+j%26))
				d := s.Decide(textMsg(content))
				r := d.Replies
				if len(r) != 3 || r[0].Custom.Text.Content != content || r[1].Custom.News.Articles[0].Title != content || r[2].Custom.MsgMenu.List[0].Content != content {
					t.Errorf("decision for %q = %+v", content, d)
					return
				}
			}
		}()
	}
	wg.Wait()
	if proto := s.rules[0].items[1].custom.News.Articles[0].Title; proto != "{{.Content}}" {
		t.Errorf("the prototype changed: %q", proto)
	}
}

func TestDecideNil(t *testing.T) {
	s := mustParse(t, matchRules)
	if d := s.Decide(nil); d.Rules != nil || d.Replies != nil || d.Passive != nil {
		t.Errorf("Decide(nil) = %+v, want nothing", d)
	}
}

// passive: true works for every type WeChat takes as a passive reply: the
// item decided is one EncodeReply turns into the XML answer.
func TestPassiveEveryType(t *testing.T) {
	tests := []struct {
		item, msgType, xml string // xml: a part of the encoded answer
	}{
		{`text: "您好 {{.FromUserName}}"`, "text", "<Content><![CDATA[您好 oUSER]]></Content>"},
		{`text: {content: long form}`, "text", "<Content><![CDATA[long form]]></Content>"},
		{`image: {media_id: "{{.MediaId}}"}`, "image", "<Image><MediaId><![CDATA[MEDIA_IN]]></MediaId></Image>"},
		{`voice: {media_id: MEDIA_VOICE}`, "voice", "<Voice><MediaId><![CDATA[MEDIA_VOICE]]></MediaId></Voice>"},
		{`video: {media_id: MEDIA_VIDEO, title: 标题, description: 描述}`, "video", "<Title><![CDATA[标题]]></Title>"},
		{`music: {title: 歌, musicurl: "https://example.com/a.mp3", hqmusicurl: "https://example.com/b.mp3", thumb_media_id: THUMB}`,
			"music", "<ThumbMediaId><![CDATA[THUMB]]></ThumbMediaId>"},
		{`news: {articles: [{title: 指南, url: "https://example.com/g"}]}`, "news", "<ArticleCount>1</ArticleCount>"},
	}
	for _, tt := range tests {
		t.Run(tt.item, func(t *testing.T) {
			s := mustParse(t, "kf_account: kf@acct\nrules:\n  - name: p\n    match: {msgtype: image}\n    passive: true\n    reply:\n      - "+tt.item+"\n")
			m := &wechat.Message{FromUserName: testUser, ToUserName: "gh_acct", MsgType: "image", MediaId: "MEDIA_IN", MsgId: "5"}
			d := s.Decide(m)
			if d.Passive == nil || len(d.Replies) != 0 {
				t.Fatalf("decision %+v, want the item as the passive reply and nothing sent", d)
			}
			if d.Passive.MsgType != tt.msgType || d.Passive.ToUser != testUser || d.Passive.CustomService != nil {
				t.Errorf("passive msgtype %q touser %q customservice %v", d.Passive.MsgType, d.Passive.ToUser, d.Passive.CustomService)
			}
			xml, err := wechat.EncodeReply(m.FromUserName, m.ToUserName, 1700000000, d.Passive)
			if err != nil {
				t.Fatalf("EncodeReply: %v", err)
			}
			for _, want := range []string{"<MsgType><![CDATA[" + tt.msgType + "]]></MsgType>", tt.xml} {
				if !strings.Contains(string(xml), want) {
					t.Errorf("XML %s lacks %s", xml, want)
				}
			}
		})
	}
}

// `text: hi` is short for `text: {content: hi}` wherever a reply item
// may stand.
func TestTextShorthandEverywhere(t *testing.T) {
	tests := []struct {
		name, src, want string
		passive         bool
	}{
		{"a rule's reply", "rules: [{name: r, match: {msgtype: text}, reply: [{text: hi}]}]", "hi", false},
		{"the default's reply", "default: {reply: [{text: hi}]}", "hi", false},
		{"passive", "rules: [{name: r, match: {msgtype: text}, passive: true, reply: [{text: hi}]}]", "hi", true},
		{"passive default", "default: {passive: true, reply: [{text: hi}]}", "hi", true},
		{"pick random", "rules: [{name: r, match: {msgtype: text}, pick: random, reply: [{text: hi}, {text: hi}]}]", "hi", false},
		{"a template", `default: {reply: [{text: "you said {{.Content}}"}]}`, "you said x", false},
		{"a number", "default: {reply: [{text: 42}]}", "42", false},
		{"a boolean", "default: {reply: [{text: yes}]}", "yes", false},
		{"a block scalar", "default:\n  reply:\n    - text: |-\n        line one\n        line two\n", "line one\nline two", false},
		{"an alias of the item", "rules:\n  - {name: a, match: {event: CLICK}, reply: [&item {text: hi}]}\ndefault: {reply: [*item]}", "hi", false},
		{"an alias of the value", "rules:\n  - {name: a, match: {event: CLICK}, reply: [{text: &v hi}]}\ndefault: {reply: [{text: *v}]}", "hi", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustParse(t, tt.src).Decide(textMsg("x"))
			var got *wechat.CustomMessage
			switch {
			case tt.passive:
				got = d.Passive
			case len(d.Replies) == 1:
				got = d.Replies[0].Custom
			}
			if got == nil || got.MsgType != "text" || got.Text == nil || got.Text.Content != tt.want {
				t.Errorf("decision %+v, want one text %q", d, tt.want)
			}
		})
	}
}
