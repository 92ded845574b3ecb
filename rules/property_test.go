package rules

import (
	"flag"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/wxreply/wxreply/wechat"
	"gopkg.in/yaml.v3"
)

var propertySeed = flag.Uint64("seed", 0, "seed of the property test (0: a fixed default)")

// linearMatch is the reference the index must agree with: every rule in
// file order, checked in full; the rules that test a state first.
func linearMatch(s *Set, in *input) []int32 {
	var out, order []int32
	for i, r := range s.rules {
		if len(r.cond.values[fieldState]) > 0 {
			order = append(order, int32(i))
		}
	}
	for i, r := range s.rules {
		if len(r.cond.values[fieldState]) == 0 {
			order = append(order, int32(i))
		}
	}
	for _, i := range order {
		r := s.rules[i]
		if !r.cond.holds(in, anchor{kind: anchorNone}) {
			continue
		}
		out = append(out, i)
		if !r.cont {
			break
		}
	}
	return out
}

// Tokens that collide in interesting ways once trimmed, case-folded and
// width-folded: K is the Kelvin sign, ſ the long s, ｈｉ full-width.
var tokens = []string{"a", "b", "ab", "ba", "hi", "HI", "ｈｉ", "你好", "好", "订单", "k", "K", "ß", "ss", "SS", "ſ", " ", "x", "12", "１２", "İ", "σ", "Σ", "ς", "ﾃ", "テ"}

var regexPool = []string{`^a`, `(b+)`, `订单\s*(\d+)`, `hi|ab`, `^$`, `k`, `ß`, `x.*a`, `.*`, `(?-i)HI`, `a{2,}`, `(ab)+x`, `^hi`, `テ`, `σ`, `\d\d`}

func randText(r *rand.Rand, maxTokens int) string {
	var b strings.Builder
	for range r.IntN(maxTokens + 1) {
		b.WriteString(tokens[r.IntN(len(tokens))])
	}
	return b.String()
}

func pick[T any](r *rand.Rand, from []T) T { return from[r.IntN(len(from))] }

// some returns one to three values from gen, as the YAML of a match key.
func some(r *rand.Rand, gen func() string) any {
	n := 1 + r.IntN(3)
	vals := make([]string, n)
	for i := range vals {
		vals[i] = gen()
	}
	if n == 1 && r.IntN(2) == 0 {
		return vals[0]
	}
	return vals
}

// nonEmptyText returns a random text that does not normalize to nothing.
func nonEmptyText(r *rand.Rand) string {
	for {
		if s := randText(r, 3); normalize(s) != "" {
			return s
		}
	}
}

func randRules(r *rand.Rand, n int) []byte {
	var rules []map[string]any
	for i := range n {
		match := map[string]any{}
		for len(match) == 0 {
			if r.IntN(4) == 0 {
				match["msgtype"] = some(r, func() string { return pick(r, []string{"text", "voice", "event", "image"}) })
			}
			if r.IntN(5) == 0 {
				match["event"] = some(r, func() string {
					return pick(r, []string{"subscribe", "SCAN", "CLICK", "click", "TEMPLATESENDJOBFINISH"})
				})
			}
			if r.IntN(6) == 0 {
				match["event_key"] = some(r, func() string { return pick(r, []string{"k1", "k2", "qrscene_s1", "s1"}) })
			}
			if r.IntN(6) == 0 {
				match["scene"] = some(r, func() string { return pick(r, []string{"s1", "s2"}) })
			}
			if r.IntN(8) == 0 {
				match["menu_id"] = some(r, func() string { return pick(r, []string{"101", "102"}) })
			}
			if r.IntN(8) == 0 {
				match["status"] = some(r, func() string {
					return pick(r, []string{"success", "failed:user block", "Failed: User Block", "failed:system failed"})
				})
			}
			if r.IntN(6) == 0 {
				match["from"] = some(r, func() string { return pick(r, []string{"u1", "u2"}) })
			}
			if r.IntN(6) == 0 {
				match["state"] = some(r, func() string { return pick(r, []string{"st1", "st2"}) })
			}
			if r.IntN(2) == 0 {
				text := map[string]any{}
				for len(text) == 0 {
					for _, k := range []string{"equals", "contains", "prefix"} {
						if r.IntN(3) == 0 {
							text[k] = some(r, func() string { return nonEmptyText(r) })
						}
					}
					if r.IntN(3) == 0 {
						text["regex"] = some(r, func() string { return pick(r, regexPool) })
					}
				}
				match["text"] = text
			}
		}
		rule := map[string]any{"name": "r" + string(rune('a'+i%26)) + strings.Repeat("x", i/26), "match": match}
		if r.IntN(4) == 0 {
			rule["continue"] = true
		}
		rules = append(rules, rule)
	}
	out, err := yaml.Marshal(map[string]any{"rules": rules, "default": map[string]any{"reply": []any{map[string]any{"text": "default"}}}})
	if err != nil {
		panic(err)
	}
	return out
}

func randMessage(r *rand.Rand) *wechat.Message {
	m := &wechat.Message{FromUserName: pick(r, []string{"u1", "u2", "u3"}), MsgId: "1"}
	switch r.IntN(4) {
	case 0, 1:
		m.MsgType = "text"
		m.Content = randText(r, 6)
		if r.IntN(5) == 0 {
			m.BizMsgMenuID = pick(r, []string{"101", "102", "103"})
		}
	case 2:
		m.MsgType = pick(r, []string{"voice", "image"})
		m.Recognition = randText(r, 4)
	default:
		m.MsgType, m.MsgId = "event", ""
		m.Event = pick(r, []string{"subscribe", "SCAN", "scan", "CLICK", "TEMPLATESENDJOBFINISH", "unsubscribe"})
		m.EventKey = pick(r, []string{"", "k1", "k2", "qrscene_s1", "qrscene_s2", "s1", "s2"})
		m.Status = pick(r, []string{"", "success", "failed:user block", "failed: system failed"})
	}
	return m
}

// TestIndexAgreesWithLinearScan is the property the index rests on: for
// random rule sets and messages it returns exactly what checking every
// rule in file order returns.
func TestIndexAgreesWithLinearScan(t *testing.T) {
	seed := *propertySeed
	if seed == 0 {
		seed = 20250101
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	sets, messages, matched := 300, 300, 0
	if testing.Short() {
		sets = 50
	}
	for range sets {
		src := randRules(r, 1+r.IntN(40))
		s, err := Parse("random.yaml", src)
		if err != nil {
			t.Fatalf("seed %d: random rules do not load: %v\n%s", seed, err, src)
		}
		for range messages {
			m := randMessage(r)
			state := pick(r, []string{"", "", "st1", "st2", "st3"})
			in := newInput(m)
			in.set(fieldState, state)
			got := s.match(&in, nil)
			want := linearMatch(s, &in)
			if !slices.Equal(got, want) {
				t.Fatalf("seed %d: message %+v in state %q\nindex matched %v, linear scan %v\nrules:\n%s", seed, m, state, got, want, src)
			}
			if len(want) > 0 {
				matched++
			}
			d := s.decide(m, state)
			wantNames := make([]string, len(want))
			for i, n := range want {
				wantNames[i] = s.rules[n].name
			}
			if len(want) == 0 && m.MsgType != "event" {
				wantNames = []string{"default"}
			}
			if !slices.Equal(d.Rules, wantNames) && !(len(d.Rules) == 0 && len(wantNames) == 0) {
				t.Fatalf("seed %d: Decide rules %q, want %q", seed, d.Rules, wantNames)
			}
		}
	}
	// A generator that never matches would prove nothing.
	if total := sets * messages; matched < total/10 {
		t.Fatalf("only %d of %d random messages matched a rule: the generator is too sparse", matched, total)
	}
	t.Logf("seed %d: %d rule sets × %d messages, %d matched", seed, sets, messages, matched)
}
