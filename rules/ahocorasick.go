package rules

import (
	"slices"
	"strings"
)

// automaton is an Aho–Corasick automaton over bytes: it finds every
// pattern that occurs in a text, overlapping ones included, in one pass
// whatever the number of patterns. The same trie answers which patterns
// are prefixes of a text.
//
// It is written here rather than imported because the matcher needs
// exactly "the set of patterns occurring anywhere, overlaps included", from
// many goroutines at once, without allocating per call; the Go libraries
// on the module proxy either report only non-overlapping (leftmost)
// matches, allocate per match, are not safe for concurrent use, or keep
// 256-entry tables per node (hundreds of MB for 10,000 patterns).
//
// Patterns are UTF-8 strings matched as bytes, which is exact for UTF-8:
// a valid encoding never matches in the middle of another rune.
type automaton struct {
	nodes []acNode
	edges []acEdge   // the children of node i are edges[first:first+n]
	root  [256]int32 // the root's children, dense: every search starts there
}

type acNode struct {
	first, n int32
	fail     int32 // longest proper suffix of this node's string that is in the trie
	out      int32 // pattern ending here, or -1
	dict     int32 // nearest node on the fail chain with out >= 0, or -1
}

type acEdge struct {
	b  byte
	to int32
}

// newAutomaton builds the automaton of patterns; pattern i is reported as
// i. Patterns must be distinct and non-empty.
func newAutomaton(patterns []string) *automaton {
	order := make([]int32, len(patterns))
	for i := range order {
		order[i] = int32(i)
	}
	// Inserting in sorted order means a node's new child is always its
	// last one, so children come out sorted without a map per node.
	slices.SortFunc(order, func(a, b int32) int { return strings.Compare(patterns[a], patterns[b]) })

	children := [][]acEdge{nil}
	outs := []int32{-1}
	for _, id := range order {
		s := int32(0)
		for _, b := range []byte(patterns[id]) {
			kids := children[s]
			if k := len(kids); k > 0 && kids[k-1].b == b {
				s = kids[k-1].to
				continue
			}
			next := int32(len(children))
			children[s] = append(kids, acEdge{b, next})
			children = append(children, nil)
			outs = append(outs, -1)
			s = next
		}
		outs[s] = id
	}

	a := &automaton{nodes: make([]acNode, len(children))}
	for i := range a.root {
		a.root[i] = -1
	}
	for i, kids := range children {
		a.nodes[i] = acNode{first: int32(len(a.edges)), n: int32(len(kids)), out: outs[i], dict: -1}
		a.edges = append(a.edges, kids...)
	}
	for _, e := range children[0] {
		a.root[e.b] = e.to
	}

	// Breadth first, so that every fail target is done before it is used.
	queue := make([]int32, 0, len(a.nodes))
	for _, e := range children[0] {
		queue = append(queue, e.to) // fail = 0, dict = -1: the zero values set above
	}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for _, e := range a.children(u) {
			f := a.nodes[u].fail
			for a.child(f, e.b) < 0 && f != 0 {
				f = a.nodes[f].fail
			}
			if t := a.child(f, e.b); t >= 0 && t != e.to {
				f = t
			} else {
				f = 0
			}
			v := &a.nodes[e.to]
			v.fail = f
			if a.nodes[f].out >= 0 {
				v.dict = f
			} else {
				v.dict = a.nodes[f].dict
			}
			queue = append(queue, e.to)
		}
	}
	return a
}

func (a *automaton) children(s int32) []acEdge {
	n := a.nodes[s]
	return a.edges[n.first : n.first+n.n]
}

// child returns the child of s on b, or -1.
func (a *automaton) child(s int32, b byte) int32 {
	if s == 0 {
		return a.root[b]
	}
	kids := a.children(s)
	lo, hi := 0, len(kids)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if kids[m].b < b {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(kids) && kids[lo].b == b {
		return kids[lo].to
	}
	return -1
}

// appendMatches appends to dst the id of every pattern occurring in text,
// once per occurrence.
func (a *automaton) appendMatches(dst []int32, text string) []int32 {
	if a == nil {
		return dst
	}
	s := int32(0)
	for i := 0; i < len(text); i++ {
		b := text[i]
		for {
			if t := a.child(s, b); t >= 0 {
				s = t
				break
			}
			if s == 0 {
				break
			}
			s = a.nodes[s].fail
		}
		o := s
		if a.nodes[o].out < 0 {
			o = a.nodes[o].dict
		}
		for o > 0 {
			dst = append(dst, a.nodes[o].out)
			o = a.nodes[o].dict
		}
	}
	return dst
}

// appendPrefixes appends to dst the id of every pattern that text starts
// with.
func (a *automaton) appendPrefixes(dst []int32, text string) []int32 {
	if a == nil {
		return dst
	}
	s := int32(0)
	for i := 0; i < len(text); i++ {
		if s = a.child(s, text[i]); s < 0 {
			break
		}
		if out := a.nodes[s].out; out >= 0 {
			dst = append(dst, out)
		}
	}
	return dst
}
