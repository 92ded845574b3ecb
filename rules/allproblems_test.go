package rules

import (
	"strings"
	"testing"
)

// TestNoProblemHidesAnother: whatever else is wrong in a rule, in its
// reply items or in the rule itself, the rule's bad msgtype is reported
// too. (A duplicate key used to make yaml.v3 drop the whole rule.)
func TestNoProblemHidesAnother(t *testing.T) {
	items := []string{
		"- txt: hi",
		"- text: {content: [x]}",
		"- text: {content: a, content: b}",
		"- image: {}",
		"- {text: a, image: {media_id: M}}",
		"- news: {articles: [{titel: x}]}",
		"- news: {articles: [{title: a}, {title: b}]}",
		`- text: "{{.Contnet}}"`,
		"- image: {file: nope.png}",
		"- msgmenu: {list: [{id: '1', content: a}, {id: '1', content: b}]}",
		"- ~",
		"- just a string",
		"- template: {template_id: T}",
		"- template: {template_id: T, data: {k: {value: a}, k: {value: b}}}",
		"- text: {content: a, extra: b}",
		"- video: {media_id: M, file: pic.png}",
		"- music: {title: [a]}",
	}
	for _, item := range items {
		src := "rules:\n  - name: a\n    match: {msgtype: txt}\n    reply:\n      " + item + "\n"
		if _, err := Parse("testdata/inline.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), `"txt" is not an inbound message type`) {
			t.Errorf("with the item %q: %v", item, err)
		}
	}
	for _, line := range []string{
		"continue: maybe", "pick: x", "passive: [x]", "name: b", "reply: x", "reply: {text: a}",
		"match: {event: CLICK}", "nosuch: 1", "continue: true\n    continue: false",
	} {
		src := "rules:\n  - name: a\n    match: {msgtype: txt}\n    " + line + "\n"
		if _, err := Parse("testdata/inline.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), `"txt" is not an inbound message type`) {
			t.Errorf("with %q in the rule: %v", line, err)
		}
	}
	// A duplicate key counts with its first value, and says so.
	src := "rules:\n  - name: a\n    match: {msgtype: txt, msgtype: text}\nrules: []\n"
	_, err := Parse("testdata/inline.yaml", []byte(src))
	want := []string{
		`testdata/inline.yaml:3:22: rules[0].match.msgtype: "txt" is not an inbound message type`,
		`testdata/inline.yaml:3:27: rules[0].match: duplicate key "msgtype" (first at line 3)`,
		`testdata/inline.yaml:4:1: duplicate key "rules" (first at line 1)`,
	}
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("got %v\nwant a line %s", err, w)
		}
	}
}
