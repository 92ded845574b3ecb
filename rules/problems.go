package rules

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// problems collects what is wrong with a file.
type problems struct {
	file     string
	list     []Problem // errors
	warnings []Problem
	// corrupt holds the paths whose decoded value a problem left
	// unreliable (a list where a mapping belongs, say); the checks after
	// decoding skip them, and whatever is inside, rather than report
	// consequences of the same mistake. tainted holds those paths and
	// every path that contains one. Both are sets, so that a file with a
	// problem in each of its 10,000 rules is checked as fast as a good one.
	corrupt, tainted map[string]bool
}

func (p *problems) add(n *yaml.Node, path string, corrupts bool, format string, args ...any) {
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	p.list = append(p.list, Problem{File: p.file, Line: line, Col: col, Msg: msg})
	if corrupts {
		p.markCorrupt(path)
	}
}

// warn records a warning at n: something that loads but is probably not
// what was meant. It corrupts nothing.
func (p *problems) warn(n *yaml.Node, path string, format string, args ...any) {
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	p.warnings = append(p.warnings, Problem{File: p.file, Line: line, Col: col, Msg: msg, Warning: true})
}

func (p *problems) markCorrupt(path string) {
	if p.corrupt == nil {
		p.corrupt, p.tainted = make(map[string]bool), make(map[string]bool)
	}
	p.corrupt[path] = true
	for q := path; !p.tainted[q]; q = parentPath(q) {
		p.tainted[q] = true // and, once one is, all its parents are
		if q == "" {
			break
		}
	}
}

// parentPath is the path that contains path: rules[2].reply[0] for
// rules[2].reply[0].text, "" for a top-level key.
func parentPath(path string) string {
	if i := strings.LastIndexAny(path, ".["); i >= 0 {
		return path[:i]
	}
	return ""
}

// broken reports whether the value at path, or a value it is part of,
// could not be decoded reliably.
func (p *problems) broken(path string) bool {
	for q := path; ; q = parentPath(q) {
		if p.corrupt[q] {
			return true
		}
		if q == "" {
			return false
		}
	}
}

// corruptAt reports whether broken(path) or anything inside path is.
func (p *problems) corruptAt(path string) bool {
	return p.tainted[path] || p.broken(path)
}
