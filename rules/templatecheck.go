package rules

import (
	"fmt"
	"reflect"
	"strings"
	"text/template/parse"
)

// dataFields are the names TemplateData offers at the top level.
var dataFields = func() map[string]bool {
	names := map[string]bool{}
	for _, f := range reflect.VisibleFields(reflect.TypeFor[TemplateData]()) {
		if f.IsExported() && !f.Anonymous {
			names[f.Name] = true
		}
	}
	return names
}()

// checkFields walks the parts of a template where dot is still the
// TemplateData; inside range and with dot is something else, and only $
// still refers to the data.
func checkFields(n parse.Node, groups int) error {
	var walk func(n parse.Node, dotIsData bool) error
	check := func(name string) error {
		if dataFields[name] {
			return nil
		}
		if near := nearest(name, sortedKeys(dataFields)); near != "" {
			return fmt.Errorf("no field .%s in the message; did you mean .%s?", name, near)
		}
		return fmt.Errorf("no field .%s in the message (the README lists the fields)", name)
	}
	walk = func(n parse.Node, dotIsData bool) error {
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return nil
			}
			for _, c := range n.Nodes {
				if err := walk(c, dotIsData); err != nil {
					return err
				}
			}
		case *parse.ActionNode:
			return walk(n.Pipe, dotIsData)
		case *parse.PipeNode:
			if n == nil {
				return nil
			}
			for _, c := range n.Cmds {
				if err := checkGroupIndex(c, dotIsData, groups); err != nil {
					return err
				}
				for _, a := range c.Args {
					if err := walk(a, dotIsData); err != nil {
						return err
					}
				}
			}
		case *parse.ChainNode:
			return walk(n.Node, dotIsData)
		case *parse.FieldNode:
			if dotIsData {
				return check(n.Ident[0])
			}
		case *parse.VariableNode:
			if n.Ident[0] == "$" && len(n.Ident) > 1 {
				return check(n.Ident[1])
			}
		case *parse.IfNode:
			return walkBranch(walk, &n.BranchNode, dotIsData, dotIsData)
		case *parse.RangeNode:
			return walkBranch(walk, &n.BranchNode, dotIsData, false)
		case *parse.WithNode:
			return walkBranch(walk, &n.BranchNode, dotIsData, false)
		}
		return nil
	}
	return walk(n, true)
}

// checkGroupIndex reports `index .Groups N` (or $.Groups) with a constant
// N that the rule's .Groups never reaches: that reply would fail at every
// message.
func checkGroupIndex(c *parse.CommandNode, dotIsData bool, groups int) error {
	if groups == unknownGroups || len(c.Args) < 3 {
		return nil
	}
	if fn, ok := c.Args[0].(*parse.IdentifierNode); !ok || fn.Ident != "index" {
		return nil
	}
	switch a := c.Args[1].(type) {
	case *parse.FieldNode:
		if !dotIsData || len(a.Ident) != 1 || a.Ident[0] != "Groups" {
			return nil
		}
	case *parse.VariableNode:
		if len(a.Ident) != 2 || a.Ident[0] != "$" || a.Ident[1] != "Groups" {
			return nil
		}
	default:
		return nil
	}
	n, ok := c.Args[2].(*parse.NumberNode)
	if !ok || !n.IsInt || n.Int64 < int64(groups) {
		return nil
	}
	if groups == 0 {
		return fmt.Errorf("index .Groups %d: the rule has no regex, so .Groups is always empty", n.Int64)
	}
	return fmt.Errorf("index .Groups %d: the rule's regex has %d group(s), so .Groups has at most %d entries (0 is the whole match)",
		n.Int64, groups-1, groups)
}

func walkBranch(walk func(parse.Node, bool) error, b *parse.BranchNode, dotIsData, inside bool) error {
	if err := walk(b.Pipe, dotIsData); err != nil {
		return err
	}
	if err := walk(b.List, inside); err != nil {
		return err
	}
	return walk(b.ElseList, dotIsData)
}

// nearest returns the name closest to s by edit distance, ignoring case,
// when it is close enough to be a typo; "" otherwise.
func nearest(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(strings.ToLower(s), strings.ToLower(n)); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
