package rules

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestAutomaton(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		text     string
		matches  []string // every occurrence, sorted
		prefixes []string
	}{
		{"classic ushers", []string{"he", "she", "his", "hers"}, "ushers", []string{"he", "hers", "she"}, nil},
		{"overlaps and nesting", []string{"a", "ab", "bab", "bc", "bca", "c", "caa"}, "abccab", []string{"a", "a", "ab", "ab", "bc", "c", "c"}, []string{"a", "ab"}},
		{"repeats", []string{"aa"}, "aaaa", []string{"aa", "aa", "aa"}, []string{"aa"}},
		{"no match", []string{"xyz"}, "xy", nil, nil},
		{"empty text", []string{"a"}, "", nil, nil},
		{"utf-8", []string{"评价", "价", "你好"}, "我想评价你好", []string{"价", "你好", "评价"}, nil},
		{"prefixes", []string{"help", "he", "hello"}, "helping", []string{"he", "help"}, []string{"he", "help"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAutomaton(tt.patterns)
			names := func(ids []int32) []string {
				var out []string
				for _, id := range ids {
					out = append(out, tt.patterns[id])
				}
				slices.Sort(out)
				return out
			}
			if got := names(a.appendMatches(nil, tt.text)); !slices.Equal(got, tt.matches) {
				t.Errorf("matches = %q, want %q", got, tt.matches)
			}
			if got := names(a.appendPrefixes(nil, tt.text)); !slices.Equal(got, tt.prefixes) {
				t.Errorf("prefixes = %q, want %q", got, tt.prefixes)
			}
		})
	}
}

// TestAutomatonAgreesWithStrings checks the automaton against the obvious
// quadratic search on random patterns over a small alphabet, where
// overlaps and shared suffixes are the rule rather than the exception.
func TestAutomatonAgreesWithStrings(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	word := func(max int) string {
		var b strings.Builder
		for range 1 + r.IntN(max) {
			b.WriteByte("abc"[r.IntN(3)])
		}
		return b.String()
	}
	for range 500 {
		seen := map[string]bool{}
		var patterns []string
		for range 1 + r.IntN(20) {
			if p := word(5); !seen[p] {
				seen[p] = true
				patterns = append(patterns, p)
			}
		}
		a := newAutomaton(patterns)
		for range 20 {
			text := word(30)
			var want, wantPrefix []int32
			for id, p := range patterns {
				for i := 0; i+len(p) <= len(text); i++ {
					if text[i:i+len(p)] == p {
						want = append(want, int32(id))
					}
				}
				if strings.HasPrefix(text, p) {
					wantPrefix = append(wantPrefix, int32(id))
				}
			}
			got := a.appendMatches(nil, text)
			gotPrefix := a.appendPrefixes(nil, text)
			slices.Sort(got)
			slices.Sort(want)
			slices.Sort(gotPrefix)
			if !slices.Equal(got, want) || !slices.Equal(gotPrefix, wantPrefix) {
				t.Fatalf("patterns %q, text %q: matches %v want %v; prefixes %v want %v", patterns, text, got, want, gotPrefix, wantPrefix)
			}
		}
	}
}

func TestAutomatonDoesNotAllocate(t *testing.T) {
	a := newAutomaton([]string{"评价", "survey", "help", "he"})
	buf := make([]int32, 0, 16)
	allocs := testing.AllocsPerRun(100, func() {
		buf = a.appendMatches(buf[:0], "please help with the survey 评价")
		buf = a.appendPrefixes(buf[:0], "help")
	})
	if allocs != 0 {
		t.Errorf("%v allocations per search, want 0", allocs)
	}
}
