package rules

import (
	"errors"
	"strings"
	"testing"
)

// TestSyntaxErrorPositions: a YAML syntax error is reported at the line
// and column of the mistake, not at the start of the construct yaml.v3
// was reading when it noticed.
func TestSyntaxErrorPositions(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want problem
	}{
		{"unclosed [", `
rules:
  - name: a
    match: {event: [CLICK, VIEW}
    reply: [{text: hi}]`,
			problem{4, 32, "YAML syntax: } does not close the [ at line 4 column 20: ] does"}},
		{"unclosed [ at the end of a line", `
rules:
  - name: a
    match:
      event: [CLICK, VIEW
    reply: [{text: hi}]`,
			problem{5, 14, "YAML syntax: this [ is never closed: close it with ]"}},
		{"unclosed {", `
rules:
  - name: a
    match: {event: CLICK
    reply: [{text: hi}]
  - name: b
    match: {event: VIEW}`,
			problem{4, 12, "YAML syntax: this { is never closed: close it with }"}},
		{"unclosed [ at the end of the file", `
default:
  reply: [{text: hi}`,
			problem{3, 10, "YAML syntax: this [ is never closed: close it with ]"}},
		{"a line indented between two levels", `
rules:
  - name: a
   match: {event: CLICK}
    reply: [{text: hi}]`,
			problem{4, 4, "YAML syntax: this line is indented 3 spaces, between the levels of the lines above (2 and 4)"}},
		{"a line indented deeper than its siblings", `
rules:
  - name: a
    match: {event: CLICK}
      reply: [{text: hi}]`,
			problem{5, 7, "YAML syntax: this line is indented 6 spaces, deeper than the line above it (4)"}},
		{"a tab", "rules:\n  - name: a\n  \tmatch: {event: CLICK}\n",
			problem{3, 3, "YAML syntax: a tab in the indentation: indent with spaces"}},
		{"an unterminated quote", `
rules:
  - name: a
    match: {event: CLICK}
    reply:
      - text: "hello
  - name: b
    match: {event: VIEW}`,
			problem{6, 15, `YAML syntax: the string opened by this " is never closed`}},
		{"an unterminated single quote", `
default:
  reply:
    - text: 'it''s
`,
			problem{4, 13, "YAML syntax: the string opened by this ' is never closed"}},
		{"a quote closed only on a later line", `
rules:
  - name: a
    match: {event: CLICK}
    reply:
      - text: "hello
      - text: "world"`,
			problem{6, 15, "YAML syntax: the string opened here runs on to line 7: is its closing quote missing?"}},
		{"a character that cannot start a token", `
rules:
  - name: a
    match: {event: CLICK}
    reply: [{text: @you}]`,
			problem{5, 20, "YAML syntax: found character that cannot start any token"}},
		{"a colon and a space in a plain value", "default:\n  reply:\n    - text: 营业时间: 9:00\n",
			problem{3, 17, `YAML syntax: mapping values are not allowed in this context: a value with ": " in it needs quotes`}},
		// yaml.v3 gives no line for a problem on the first.
		{"on the first line", "rules: a: b\n",
			problem{1, 9, "YAML syntax: mapping values are not allowed in this context"}},
		{"a control character", "default:\n  reply: [{text: \"a\x01b\"}]\n",
			problem{2, 20, "YAML syntax: control characters are not allowed"}},
		{"bytes that are not UTF-8", "default:\n  reply: [{text: \xff}]\n",
			problem{2, 18, "YAML syntax: invalid leading UTF-8 octet"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("testdata/inline.yaml", []byte(tt.src))
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want a *LoadError", err)
			}
			if len(le.Problems) != 1 {
				t.Fatalf("problems %q, want one", le.Problems)
			}
			p := le.Problems[0]
			if p.Line != tt.want.line || p.Col != tt.want.col || !strings.HasPrefix(p.Msg, tt.want.msg) {
				t.Errorf("got %s\nwant testdata/inline.yaml:%d:%d: %s…", p, tt.want.line, tt.want.col, tt.want.msg)
			}
		})
	}
}

// What the scan takes for a mistake is YAML that loads: it never finds a
// suspect in a valid file's structure, so it cannot mislead.
func TestSyntaxScanQuietOnValidYAML(t *testing.T) {
	src := `
# a comment with [ and { and "
rules:
- name: a                        # an indentless list
  match: {event: [CLICK, VIEW], event_key: "K[1]"}
  reply:
    - text: |-
        a block scalar with [ { " ' and
          deeper lines
    - text: >
        folded
    - text: 'it''s fine'
    - text: "a \" quote"
    - text: a plain scalar
        going on at a deeper indentation
    - news:
        articles:
          - title: x
-
  name: b
  match:
    event: CLICK
  reply: [
    {text: "multi-line flow"},
  ]
`
	if _, err := Parse("testdata/inline.yaml", []byte(src)); err != nil {
		t.Fatalf("the file does not load: %v", err)
	}
	s := scanYAML([]byte(src))
	for name, p := range map[string]*spot{"tab": s.tab, "flow": s.flow, "quote": s.quote, "multiline": s.multiline, "indent": s.indent} {
		if p != nil {
			t.Errorf("%s suspect at %d:%d in a valid file", name, p.line, p.col)
		}
	}
}
