package rules

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const dialogRules = `
rules:
  - name: order-ask
    match: {text: {regex: '^订单$'}}
    set_state: {name: awaiting_order, for: 5m}
    reply: [{text: 请输入订单号}]
  - name: keyword-digits
    match: {text: {regex: '^\d+$'}}
    reply: [{text: "数字 {{.Content}}"}]
  - name: order-answer
    match: {state: awaiting_order, text: {regex: '^(\d{6,})$'}}
    clear_state: true
    reply: [{text: "订单 {{index .Groups 1}} 已发货"}]
  - name: order-cancel
    match: {state: [awaiting_order], text: {equals: 取消}}
    clear_state: true
    reply: [{text: 已取消}]
  - name: again
    match: {text: {equals: 再来}}
    set_state: {name: awaiting_order}
default:
  reply: [{text: 没听懂}]
`

func TestDecideWithState(t *testing.T) {
	s := mustParse(t, dialogRules)
	if !s.UsesState() {
		t.Fatal("UsesState = false for rules that test a state")
	}
	if w := s.Warnings(); len(w) != 0 {
		t.Fatalf("warnings: %v", w)
	}
	tests := []struct {
		state, text string
		rules       []string
		reply       string
		set         string
		ttl         time.Duration
		clear       bool
		reads       int // the state is read only when a state rule could take the message
	}{
		{"", "订单", []string{"order-ask"}, "请输入订单号", "awaiting_order", 5 * time.Minute, false, 0},
		// The state rule wins over the earlier keyword rule.
		{"awaiting_order", "123456", []string{"order-answer"}, "订单 123456 已发货", "", 0, true, 1},
		{"", "123456", []string{"keyword-digits"}, "数字 123456", "", 0, false, 1},
		{"awaiting_city", "123456", []string{"keyword-digits"}, "数字 123456", "", 0, false, 1},
		// In the state, a message the state rules do not take goes to the
		// others, and the state stays.
		{"awaiting_order", "12", []string{"keyword-digits"}, "数字 12", "", 0, false, 0},
		{"awaiting_order", "hello", []string{"default"}, "没听懂", "", 0, false, 0},
		{"awaiting_order", "取消", []string{"order-cancel"}, "已取消", "", 0, true, 1},
		{"", "取消", []string{"default"}, "没听懂", "", 0, false, 1},
		{"", "再来", []string{"again"}, "", "awaiting_order", DefaultStateFor, false, 0},
	}
	for _, tc := range tests {
		calls := 0
		d, err := s.DecideWithState(textMsg(tc.text), func() (string, error) { calls++; return tc.state, nil })
		if err != nil || calls != tc.reads {
			t.Fatalf("%q in %q: err %v, %d reads, want %d", tc.text, tc.state, err, calls, tc.reads)
		}
		reply := ""
		if len(d.Replies) > 0 {
			reply = d.Replies[0].Custom.Text.Content
		}
		if !slices.Equal(d.Rules, tc.rules) || reply != tc.reply || d.SetState != tc.set || d.StateFor != tc.ttl || d.ClearState != tc.clear {
			t.Errorf("%q in %q: rules %v reply %q set %q for %s clear %v; want %v %q %q %s %v", tc.text, tc.state,
				d.Rules, reply, d.SetState, d.StateFor, d.ClearState, tc.rules, tc.reply, tc.set, tc.ttl, tc.clear)
		}
	}
	boom := errors.New("store down")
	if _, err := s.DecideWithState(textMsg("123456"), func() (string, error) { return "", boom }); !errors.Is(err, boom) {
		t.Errorf("a failed read: %v, want it returned", err)
	}
}

func TestNoStateNoRead(t *testing.T) {
	s := mustParse(t, "rules:\n  - name: a\n    match: {text: {equals: hi}}\n    reply: [{text: yo}]\n")
	if s.UsesState() {
		t.Fatal("UsesState = true for rules without states")
	}
	d, err := s.DecideWithState(textMsg("hi"), func() (string, error) { t.Fatal("state read for rules without states"); return "", nil })
	if err != nil || !slices.Equal(d.Rules, []string{"a"}) {
		t.Fatalf("Decide = %v, %v", d.Rules, err)
	}
}

func TestStateProblems(t *testing.T) {
	src := `
rules:
  - name: a
    match: {text: {equals: a}}
    set_state: {name: one, for: soon}
  - name: b
    match: {text: {equals: b}}
    set_state: {name: " ", for: 0s}
    clear_state: true
  - name: c
    match: {state: one}
    set_state: {name: one, for: 1000h}
`
	_, err := Parse(filepath.Join("testdata", "inline.yaml"), []byte(src))
	if err == nil {
		t.Fatal("loaded")
	}
	for _, want := range []string{
		`inline.yaml:5:33: rules[0].set_state.for: "soon" is not a duration`,
		`inline.yaml:8:16: rules[1].set_state: needs a name`,
		`inline.yaml:8:33: rules[1].set_state.for: want a duration above 0`,
		`inline.yaml:9:18: rules[1].clear_state: a rule with set_state replaces the state already`,
		`inline.yaml:12:33: rules[2].set_state.for: want a duration above 0 and at most 720h (30 days), got 1000h`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}

	s := mustParse(t, `
rules:
  - name: a
    match: {state: [nobody_sets, set_here]}
  - name: b
    match: {text: {equals: b}}
    set_state: {name: set_here}
  - name: c
    match: {text: {equals: c}}
    set_state: {name: nobody_tests}
`)
	var got []string
	for _, w := range s.Warnings() {
		got = append(got, w.String())
	}
	want := []string{
		`testdata/inline.yaml:4:21: warning: rules[0].match.state[0]: no rule sets the state "nobody_sets" (set_state: {name: nobody_sets}): this rule never matches`,
		`testdata/inline.yaml:10:23: warning: rules[2].set_state.name: no rule tests the state "nobody_tests" (match: {state: nobody_tests}): setting it changes nothing`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestSampleDialog: the sample's order dialog, as its comment promises.
func TestSampleDialog(t *testing.T) {
	s, err := Load("../rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := s.Decide(textMsg("订单"))
	if !slices.Equal(d.Rules, []string{"order-ask"}) || d.SetState != "awaiting_order" || d.StateFor != 10*time.Minute {
		t.Fatalf("订单: rules %v, set %q for %s", d.Rules, d.SetState, d.StateFor)
	}
	d, err = s.DecideWithState(textMsg("123456"), func() (string, error) { return "awaiting_order", nil })
	if err != nil || !slices.Equal(d.Rules, []string{"order-answer"}) || !d.ClearState ||
		d.Replies[0].Custom.Text.Content != "订单 123456 已发货" {
		t.Fatalf("123456 awaiting an order: %+v, %v", d, err)
	}
	d, _ = s.DecideWithState(textMsg("123456"), func() (string, error) { return "", nil })
	if !slices.Equal(d.Rules, []string{defaultName}) || d.ClearState {
		t.Fatalf("123456 without a state: rules %v", d.Rules)
	}
}
