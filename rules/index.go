package rules

import "slices"

// The index answers "which rules could match this message" without looking
// at the others: each rule is filed under one of its keys, its anchor, and
// a message looks up only the entries its own subjects name. Since all of
// a rule's keys must hold, its anchor must hold too, so a rule the index
// does not return cannot match. The candidates are then checked in file
// order exactly as a linear scan would check every rule, which is why the
// two return the same (property_test.go runs both).

type anchorKind uint8

const (
	anchorNone     anchorKind = iota // filed nowhere: tried for every message
	anchorField                      // hash of the values of one field
	anchorPrefix                     // trie of text.prefix
	anchorContains                   // Aho–Corasick automaton of text.contains
	anchorLiteral                    // the same automaton, with a string every regex match contains
	anchorAnyText                    // regexes with no such string: tried for every text
)

// anchor is the key a rule is filed under. For anchorField, anchorPrefix
// and anchorContains the index is exact, so the full check skips that key.
type anchor struct {
	kind  anchorKind
	field field
}

// anchorOrder lists the fields from most to least selective: a rule is
// filed under the first one it has. Text keys and the kind of event come
// after the ids because many rules share `event: CLICK` but few share an
// event_key. A state comes first: the rules that test one are then
// candidates only while the sender has it (Set.stateFirst relies on it).
var anchorOrder = [...]field{fieldState, fieldEquals, fieldMenuID, fieldEventKey, fieldScene, fieldFrom}

var lateFields = [...]field{fieldStatus, fieldEvent, fieldMsgType}

func chooseAnchor(c *condition) anchor {
	for _, f := range anchorOrder {
		if len(c.values[f]) > 0 {
			return anchor{kind: anchorField, field: f}
		}
	}
	switch {
	case len(c.prefix) > 0:
		return anchor{kind: anchorPrefix}
	case len(c.contains) > 0:
		return anchor{kind: anchorContains}
	case len(c.regexes) > 0 && !slices.Contains(c.literals, ""):
		return anchor{kind: anchorLiteral}
	}
	for _, f := range lateFields {
		if len(c.values[f]) > 0 {
			return anchor{kind: anchorField, field: f}
		}
	}
	if len(c.regexes) > 0 {
		return anchor{kind: anchorAnyText}
	}
	return anchor{kind: anchorNone}
}

// index holds rule numbers (positions in Set.rules), each list ascending.
type index struct {
	fields       [numFields]map[string][]int32
	prefix       *automaton
	prefixPost   [][]int32 // by prefix pattern id
	contains     *automaton
	containsPost [][]int32 // by contains pattern id
	anyText      []int32
	always       []int32
}

// postings numbers distinct patterns and lists the rules of each.
type postings struct {
	ids      map[string]int32
	patterns []string
	rules    [][]int32
}

func (p *postings) add(pattern string, rule int32) {
	id, ok := p.ids[pattern]
	if !ok {
		if p.ids == nil {
			p.ids = make(map[string]int32)
		}
		id = int32(len(p.patterns))
		p.ids[pattern] = id
		p.patterns = append(p.patterns, pattern)
		p.rules = append(p.rules, nil)
	}
	p.rules[id] = appendRule(p.rules[id], rule)
}

func (p *postings) automaton() *automaton {
	if len(p.patterns) == 0 {
		return nil
	}
	return newAutomaton(p.patterns)
}

// appendRule appends rule unless it is already last (a rule listing a
// value twice).
func appendRule(list []int32, rule int32) []int32 {
	if n := len(list); n > 0 && list[n-1] == rule {
		return list
	}
	return append(list, rule)
}

func buildIndex(rules []*rule) index {
	var ix index
	var prefix, contains postings
	for i, r := range rules {
		n := int32(i)
		r.anchor = chooseAnchor(&r.cond)
		switch r.anchor.kind {
		case anchorField:
			f := r.anchor.field
			if ix.fields[f] == nil {
				ix.fields[f] = make(map[string][]int32)
			}
			for _, v := range r.cond.values[f] {
				ix.fields[f][v] = appendRule(ix.fields[f][v], n)
			}
		case anchorPrefix:
			for _, p := range r.cond.prefix {
				prefix.add(p, n)
			}
		case anchorContains:
			for _, p := range r.cond.contains {
				contains.add(p, n)
			}
		case anchorLiteral:
			for _, p := range r.cond.literals {
				contains.add(p, n)
			}
		case anchorAnyText:
			ix.anyText = append(ix.anyText, n)
		default:
			ix.always = append(ix.always, n)
		}
	}
	ix.prefix, ix.prefixPost = prefix.automaton(), prefix.rules
	ix.contains, ix.containsPost = contains.automaton(), contains.rules
	return ix
}

// candidates appends to dst, ascending and without repeats, every rule
// whose anchor holds for in.
func (ix *index) candidates(in *input, dst []int32) []int32 {
	for f := range numFields {
		if in.has[f] && ix.fields[f] != nil {
			dst = append(dst, ix.fields[f][in.subjects[f]]...)
		}
	}
	if in.hasText {
		var buf [32]int32
		for _, p := range ix.prefix.appendPrefixes(buf[:0], in.text) {
			dst = append(dst, ix.prefixPost[p]...)
		}
		hits := ix.contains.appendMatches(buf[:0], in.text)
		if len(hits) > 1 {
			slices.Sort(hits)
			hits = slices.Compact(hits)
		}
		for _, p := range hits {
			dst = append(dst, ix.containsPost[p]...)
		}
		dst = append(dst, ix.anyText...)
	}
	dst = append(dst, ix.always...)
	if len(dst) > 1 {
		slices.Sort(dst)
		dst = slices.Compact(dst)
	}
	return dst
}
