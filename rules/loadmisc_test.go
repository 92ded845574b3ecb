package rules

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadAcceptsYAMLFeatures: anchors, aliases and merge keys are YAML
// that operators use to avoid repeating themselves.
func TestLoadAcceptsYAMLFeatures(t *testing.T) {
	s := mustParse(t, `
rules:
  - name: a
    match: {menu_id: "101"}
    reply: &thanks [{text: thanks}]
  - name: b
    match: {event: CLICK, event_key: [K1, K2]}
    reply: *thanks
  - &base
    name: c
    match: {event: VIEW}
    reply: [{text: base}]
  - <<: *base
    name: d
    match: {event: SCAN}
`)
	msg := textMsg("x")
	msg.BizMsgMenuID = "101"
	tests := []struct {
		name  string
		rule  string
		reply string
		d     Decision
	}{
		{"anchor", "a", "thanks", s.Decide(msg)},
		{"alias", "b", "thanks", s.Decide(eventMsg("CLICK", "K2"))},
		{"merge key", "d", "base", s.Decide(eventMsg("SCAN", ""))},
	}
	for _, tt := range tests {
		if len(tt.d.Rules) != 1 || tt.d.Rules[0] != tt.rule || len(tt.d.Replies) != 1 || tt.d.Replies[0].Custom.Text.Content != tt.reply {
			t.Errorf("%s: decision %+v, want rule %s replying %q", tt.name, tt.d, tt.rule, tt.reply)
		}
	}
}

// An alias bomb (a small file that expands enormously through aliases)
// must be refused, not expanded.
func TestLoadRefusesAliasBombs(t *testing.T) {
	var b strings.Builder
	b.WriteString("rules:\n  - name: r0\n    match: {event: CLICK}\n    reply: &items\n")
	b.WriteString("      - news: {articles: &arts [" + strings.Repeat("{title: a}, ", 499) + "{title: a}]}\n")
	for range 499 {
		b.WriteString("      - news: {articles: *arts}\n")
	}
	for i := 1; i < 500; i++ {
		fmt.Fprintf(&b, "  - {name: r%d, match: {event: CLICK}, reply: *items}\n", i)
	}
	_, err := Parse("bomb.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "aliases") {
		t.Fatalf("err = %.300v, want the expansion refused", err)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(bad, []byte("rules:\n  - {name: a, match: {evnt: x}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want []string
	}{
		{"../rules.yaml", nil},
		{bad, []string{bad + ":2:22: rules[0].match: no keys", bad + `:2:23: rules[0].match: unknown key "evnt"`}},
		{filepath.Join(dir, "missing.yaml"), []string{filepath.Join(dir, "missing.yaml") + ": cannot read: no such file or directory"}},
	}
	for _, tt := range tests {
		got := Check(tt.path)
		var lines []string
		for _, p := range got {
			lines = append(lines, p.String())
		}
		if len(lines) != len(tt.want) {
			t.Errorf("Check(%s) = %q, want %q", tt.path, lines, tt.want)
			continue
		}
		for i := range lines {
			if !strings.HasPrefix(lines[i], tt.want[i]) {
				t.Errorf("Check(%s)[%d] = %q, want %q…", tt.path, i, lines[i], tt.want[i])
			}
		}
	}
}

func TestLoadReadError(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestProblemString(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "rules.yaml", Line: 3, Col: 7, Msg: "bad"}, "rules.yaml:3:7: bad"},
		{Problem{File: "rules.yaml", Msg: "empty"}, "rules.yaml: empty"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
	err := &LoadError{Problems: []Problem{tests[0].p, tests[1].p}}
	if got := err.Error(); got != "rules.yaml:3:7: bad\nrules.yaml: empty" {
		t.Errorf("Error() = %q", got)
	}
}

// A file far larger than any rules file (a log, a binary) is refused
// before it is read whole or parsed.
func TestLoadRefusesHugeFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.yaml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("rules:\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(maxFileSize + 1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	got := Check(path)
	if len(got) != 1 || got[0].String() != path+": larger than 32 MiB: not a rules file" {
		t.Errorf("Check = %v, want the file refused for its size", got)
	}
	if _, err := Parse("huge.yaml", make([]byte, maxFileSize+1)); err == nil || !strings.Contains(err.Error(), "larger than 32 MiB") {
		t.Errorf("Parse = %v, want the data refused for its size", err)
	}
}
