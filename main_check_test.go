package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckCommand runs `wxreply check` on several files at once: every
// problem of every file, FILE:LINE:COL each, warnings marked and not
// failing, exit 1 when any file has an error.
func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.yaml", "default:\n  reply:\n    - text: hi\n")
	warned := writeFile(t, dir, "warned.yaml", "rules:\n  - name: welcome\n    match: {event: subscibe}\n    reply: [{text: hi}]\n")
	bad := writeFile(t, dir, "bad.yaml", "rules:\n  - name: a\n    match: {msgtype: txt}\n    reply: [{txt: hi}]\n")
	broken := writeFile(t, dir, "off.yaml", "rules:\n  - name: a\n    match: {event: [CLICK}\n    reply: [{text: hi}]\n")
	missing := filepath.Join(dir, "missing.yaml")
	human := writeFile(t, dir, "human.yaml", "rules:\n  - name: human\n    match: {text: {equals: human}}\n    reply: [{transfer_customer_service: {}}]\n"+
		"  - name: order\n    match: {text: {equals: o}}\n    fallback: [{text: busy}]\n    reply: [{webhook: {url: \"https://backend.example.com/o\"}}]\n")

	tests := []struct {
		name  string
		files []string
		code  int
		want  []string // the lines of stdout, in order
	}{
		{"the sample has no problem and no warning", []string{"rules.yaml"}, 0, []string{"rules.yaml: ok"}},
		{"a valid file", []string{good}, 0, []string{good + ": ok"}},
		{"warnings only", []string{warned}, 0, []string{
			warned + `:3:20: warning: rules[0].match.event: "subscibe" is not an event WeChat sends: the rule never matches it; did you mean subscribe?`,
			warned + ": ok, 1 warning"}},
		{"every problem of a rule", []string{bad}, 1, []string{
			bad + `:3:22: rules[0].match.msgtype: "txt" is not an inbound message type; want one of text, image, voice, video, shortvideo, location, link, file, event`,
			bad + `:4:14: rules[0].reply[0]: unknown reply type "txt"; want one of text, image, voice, video, music, news, mpnews, mpnewsarticle, msgmenu, wxcard, miniprogrampage, template, webhook, transfer_customer_service`}},
		{"a hand-over without passive, a webhook", []string{human}, 1, []string{
			human + ":4:13: rules[0].reply[0]: transfer_customer_service is a passive reply only: give the rule `passive: true` and make it the first reply item",
			human + ":8:23: warning: rules[1].reply[0].webhook: webhook requests are signed with WXREPLY_WEBHOOK_SECRET: the server refuses to start without it"}},
		{"several files, one bad", []string{good, broken, warned, missing}, 1, []string{
			good + ": ok",
			broken + ":3:26: YAML syntax: } does not close the [ at line 3 column 20: ] does (did not find expected ',' or ']')",
			warned + `:3:20: warning: rules[0].match.event: "subscibe" is not an event WeChat sends: the rule never matches it; did you mean subscribe?`,
			warned + ": ok, 1 warning",
			missing + ": cannot read: no such file or directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runWith(nil, append([]string{"check"}, tt.files...)...)
			got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if code != tt.code || strings.Join(got, "\n") != strings.Join(tt.want, "\n") || errOut != "" {
				t.Errorf("exit %d, stdout:\n%s\nstderr %q\nwant exit %d, stdout:\n%s", code, out, errOut, tt.code, strings.Join(tt.want, "\n"))
			}
		})
	}
}

// Without a file, check checks $WXREPLY_RULES.
func TestCheckDefaultsToTheRulesVariable(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "mine.yaml", "default:\n  reply:\n    - text: hi\n")
	if code, out, _ := runWith(map[string]string{"WXREPLY_RULES": f}, "check"); code != 0 || out != f+": ok\n" {
		t.Errorf("exit %d, stdout %q", code, out)
	}
}
