package rules

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWarnings: what loads but is probably a mistake is a warning, at its
// position; the file still loads.
func TestWarnings(t *testing.T) {
	const click = "rules:\n  - name: a\n    match: {event: CLICK}\n    reply:\n"
	tests := []struct {
		name string
		src  string
		want []problem
	}{
		{"events WeChat never sends", `
rules:
  - name: a
    match: {event: subscibe}
  - name: b
    match: {event: [CLICK, clik, SCAN, no_such_thing]}
  - name: c
    match: {event: [Subscribe, scan, templatesendjobfinish, kf_create_session, WifiConnected]}`,
			[]problem{{4, 20, `rules[0].match.event: "subscibe" is not an event WeChat sends: the rule never matches it; did you mean subscribe?`},
				{6, 28, `rules[1].match.event[1]: "clik" is not an event WeChat sends: the rule never matches it; did you mean CLICK?`},
				{6, 40, `rules[1].match.event[3]: "no_such_thing" is not an event WeChat sends: the rule never matches it; the README lists the events`}}},
		{"statuses no job reports", `
rules:
  - name: a
    match:
      event: TEMPLATESENDJOBFINISH
      status: [faild, "failed:user blok", success, "FAILED:  system failed", "failed: user block"]
  - name: b
    match: {event: MASSSENDJOBFINISH, status: [sendsuccess, "send fail", "err(30003)", "err(x)"]}`,
			[]problem{{6, 16, `rules[0].match.status[0]: "faild" is not a status WeChat reports: the rule never matches it; TEMPLATESENDJOBFINISH reports success`},
				{6, 23, `rules[0].match.status[1]: "failed:user blok" is not a status WeChat reports: the rule never matches it; did you mean "failed:user block"?`},
				{8, 88, `rules[1].match.status[3]: "err(x)" is not a status WeChat reports`}}},
		{"a msgmenu choice no rule answers", `
rules:
  - name: survey
    match: {text: {contains: 评价}}
    reply:
      - msgmenu:
          list:
            - {id: "101", content: 满意}
            - {id: "102", content: 不满意}
            - {id: "103", content: 一般}
  - name: satisfied
    match: {menu_id: "101"}
    reply: [{text: 谢谢}]
  # a choice answered through its text counts too
  - name: so-so
    match: {text: {equals: 一般}}
    reply: [{text: 好的}]
default:
  reply: [{text: 没听懂}]`,
			[]problem{{9, 20, `rules[0].reply[0].msgmenu.list[1].id: no rule answers the choice "102": a tap on it gets the default reply; answer it with a rule that has ` + "`menu_id: \"102\"`"}}},
		{"a menu click with more replies than it allows", click + `
      - text: a
      - text: b
      - image: {media_id: M}
      - template: {template_id: T, data: {first: {value: x}}}
      - news: {articles: [{title: t}]}`,
			[]problem{{6, 7, "rules[0].reply: 4 customer-service messages answer a menu click (CLICK); WeChat allows 3 for a follow, a QR scan or a menu click and refuses the rest with 45047"}}},
		{"as many as a click allows, a template message aside", click + `
      - text: a
      - text: b
      - image: {media_id: M}
      - template: {template_id: T, data: {first: {value: x}}}`, nil},
		{"a passive reply does not count", `
rules:
  - name: a
    match: {event: subscribe}
    passive: true
    reply: [{text: a}, {text: b}, {text: c}, {text: d}]`, nil},
		{"pick random sends one", `
rules:
  - name: a
    match: {event: CLICK}
    pick: random
    reply: [{text: a}, {text: b}, {text: c}, {text: d}]`, nil},
		{"a user's message allows 5", `
rules:
  - name: five
    match: {text: {equals: hi}}
    reply: [{text: a}, {text: b}, {text: c}, {text: d}, {text: e}]
  - name: six
    match: {msgtype: image}
    reply: [{text: a}, {text: b}, {text: c}, {text: d}, {text: e}, {text: f}]
default:
  reply: [{text: a}, {text: b}, {text: c}, {text: d}, {text: e}, {text: f}]`,
			[]problem{{8, 12, "rules[1].reply: 6 customer-service messages answer a user's message; WeChat allows 5 for a user's message"},
				{10, 10, "default.reply: 6 customer-service messages answer a user's message"}}},
		{"a rule that answers anything is held to the smallest cap", `
rules:
  - name: vip
    match: {from: oVIP}
    reply: [{text: a}, {text: b}, {text: c}, {text: d}]`,
			[]problem{{5, 12, "rules[0].reply: 4 customer-service messages answer a follow (subscribe)"}}},
		{"rules with continue add up", `
rules:
  - name: campaign
    match: {scene: spring}
    continue: true
    reply: [{text: a}]
  - name: other-campaign
    match: {scene: autumn}
    continue: true
    reply: [{text: a}]
  - name: clicks
    match: {event: CLICK}
    continue: true
    reply: [{text: a}, {text: b}]
  - name: welcome
    match: {event: subscribe}
    reply: [{text: a}, {text: b}, {text: c}]
  - name: scan
    match: {event: SCAN, scene: winter}
    reply: [{text: a}, {text: b}, {text: c}]`,
			[]problem{{17, 12, "rules[3].reply: with campaign (continue: true) before this rule, a follow (subscribe) may get 4 customer-service messages; WeChat allows 3"}}},
		{"the default is not added to rules with continue", `
rules:
  - name: all
    match: {msgtype: text}
    continue: true
    reply: [{text: a}, {text: b}, {text: c}]
default:
  reply: [{text: a}, {text: b}, {text: c}]`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("testdata/inline.yaml", []byte(tt.src))
			if err != nil {
				t.Fatalf("warnings refused the file: %v", err)
			}
			got := s.Warnings()
			for i := 0; i < max(len(got), len(tt.want)); i++ {
				switch {
				case i >= len(got):
					t.Errorf("missing warning %d:%d: %s", tt.want[i].line, tt.want[i].col, tt.want[i].msg)
				case i >= len(tt.want):
					t.Errorf("unexpected warning %s", got[i])
				case got[i].Line != tt.want[i].line || got[i].Col != tt.want[i].col || !strings.Contains(got[i].Msg, tt.want[i].msg) || !got[i].Warning:
					t.Errorf("warning %d = %s\n want testdata/inline.yaml:%d:%d: warning: …%s…", i, got[i], tt.want[i].line, tt.want[i].col, tt.want[i].msg)
				}
			}
		})
	}
}

// Check gives a file's errors and warnings together, in file order; the
// errors alone make the LoadError.
func TestCheckGivesErrorsAndWarnings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	src := "rules:\n  - name: a\n    match: {event: subscibe}\n  - name: b\n    match: {msgtype: txt}\n"
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, p := range Check(path) {
		lines = append(lines, p.String())
	}
	want := []string{
		path + `:3:20: warning: rules[0].match.event: "subscibe" is not an event WeChat sends: the rule never matches it; did you mean subscribe?`,
		path + `:5:22: rules[1].match.msgtype: "txt" is not an inbound message type; want one of text, image, voice, video, shortvideo, location, link, file, event`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("Check:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	_, err := Load(path)
	var le *LoadError
	if !errors.As(err, &le) || len(le.Problems) != 1 || len(le.Warnings) != 1 || strings.Contains(err.Error(), "warning") {
		t.Errorf("Load: %v (%+v)", err, le)
	}
}

// TestEveryProblemOfARule: a rule's problems are all reported at once,
// whatever else is wrong with it.
func TestEveryProblemOfARule(t *testing.T) {
	src := `
rules:
  - name: a
    match: {msgtype: txt, event: subscibe}
    pick: sometimes
    reply:
      - txt: hi
      - text: {content: [x]}
      - image: {}
      - news: {articles: [{title: a}, {title: b}]}
      - text: "{{.Contnet}}"`
	_, err := Parse("testdata/inline.yaml", []byte(src))
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v", err)
	}
	want := []string{
		`rules[0].match.msgtype: "txt" is not an inbound message type`,
		`rules[0].pick: want all or random`,
		`rules[0].reply[0]: unknown reply type "txt"`,
		`rules[0].reply[1].text.content: expected a string, got a list`,
		`rules[0].reply[2].image.media_id: required`,
		`rules[0].reply[3].news.articles: has 2 articles`,
		`rules[0].reply[4].text.content: invalid template: no field .Contnet`,
	}
	got := le.Problems
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), err)
	}
	for i, w := range want {
		if !strings.Contains(got[i].Msg, w) {
			t.Errorf("problem %d = %s, want …%s…", i, got[i], w)
		}
	}
	if len(le.Warnings) != 1 || !strings.Contains(le.Warnings[0].Msg, `"subscibe"`) {
		t.Errorf("warnings %v, want the event's", le.Warnings)
	}
}
