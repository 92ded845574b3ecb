package rules

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one thing wrong with a rules file, at its position.
type Problem struct {
	File      string
	Line, Col int // 1-based; 0 when the problem is the whole file
	Msg       string
	// Warning marks what loads but is probably not what was meant: an
	// event WeChat never sends, more replies than WeChat lets one
	// interaction have. A file with warnings only is valid.
	Warning bool
}

// String formats p as FILE:LINE:COL: message, the form compilers use and
// editors jump to, with "warning: " before the message of a warning; a
// problem with the whole file is FILE: message.
func (p Problem) String() string {
	msg := p.Msg
	if p.Warning {
		msg = "warning: " + msg
	}
	if p.Line == 0 {
		return p.File + ": " + msg
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, msg)
}

// LoadError is every problem found in a rules file, in file order.
type LoadError struct {
	Problems []Problem // the errors: why the file was not loaded
	Warnings []Problem // found beside them; they alone would not refuse the file
}

func (e *LoadError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Load reads and parses the rules file at path. A file that cannot be read
// gives that error (test it with errors.Is(err, fs.ErrNotExist)); a file
// with problems gives a *LoadError listing all of them.
func Load(path string, opts ...Option) (*Set, error) {
	return load(path, buildOptions(opts))
}

// maxFileSize bounds a rules file. 10,000 rules take about 1 MiB; a file
// far larger is a mistake (a log, a binary named by -rules), and parsing
// it would take many times its size in memory.
const maxFileSize = 32 << 20

func load(path string, o options) (*Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	defer f.Close()
	// One byte more than allowed is enough to tell that it is too big.
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	return parseRules(path, data, o)
}

// Parse parses data as the rules file filename: problems are reported
// against filename, and `file:` paths are relative to its directory.
func Parse(filename string, data []byte, opts ...Option) (*Set, error) {
	return parseRules(filename, data, buildOptions(opts))
}

// Check validates the rules file at path and returns its problems, errors
// and warnings (Problem.Warning) together in file order; none when it is
// valid and nothing in it looks like a mistake. It is `wxreply check`: the
// file is valid when no problem is an error.
func Check(path string) []Problem {
	s, err := Load(path)
	if err == nil {
		return s.Warnings()
	}
	var le *LoadError
	if errors.As(err, &le) {
		return sortProblems(slices.Concat(le.Problems, le.Warnings))
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return []Problem{{File: path, Msg: "cannot read: " + pe.Err.Error()}}
	}
	return []Problem{{File: path, Msg: err.Error()}}
}

func parseRules(filename string, data []byte, o options) (*Set, error) {
	p := &problems{file: filename}
	if len(data) > maxFileSize {
		p.add(nil, "", true, "larger than %d MiB: not a rules file", maxFileSize>>20)
		return nil, p.err()
	}
	root := parseYAML(p, data)
	if root == nil {
		return nil, p.err()
	}
	c := newChecker(p, root)
	c.check(root, reflect.TypeFor[fileSpec](), "")
	if c.exhausted {
		return nil, p.err() // decoding would expand the aliases too
	}
	var spec fileSpec
	_ = root.Decode(&spec) // what it would complain of, the checker has reported

	dir, err := filepath.Abs(filepath.Dir(filename))
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	cp := &compiler{checker: c, dir: dir, names: make(map[string]*yaml.Node), caps: capChecker{budget: capPairBudget}}
	s := &Set{
		path:  filename,
		hash:  contentHash(data),
		kf:    strings.TrimSpace(spec.KfAccount),
		log:   o.logger,
		intn:  o.intn,
		rules: cp.compileRules(spec.Rules),
		def:   cp.compileDefault(spec.Default),
		menu:  cp.compileMenu(spec.Menu),
	}
	s.now, s.loc = o.now, cp.compileTimezone(spec.Timezone)
	for _, r := range s.rules {
		s.timed = s.timed || r.cond.when != nil
	}
	if s.kf != "" && !p.corruptAt("kf_account") && !kfAccount.MatchString(s.kf) {
		p.add(c.node("kf_account"), "kf_account", false,
			"%q is not a customer-service account: WeChat names one account@wechat_id, as in kf2001@gh_account", s.kf)
	}
	if len(spec.Rules) == 0 && spec.Default == nil && !p.corruptAt("rules") && !p.corruptAt(defaultName) &&
		!(o.menuOnly && spec.Menu != nil) {
		p.add(root, "", false, "no rules and no default: nothing would ever be answered")
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	s.idx = buildIndex(s.rules)
	cp.warnUnansweredChoices(s)
	if !o.menuOnly || len(spec.Rules) > 0 {
		cp.warnMenu(s, spec.Rules)
	}
	s.warnings = sortProblems(p.warnings)
	return s, nil
}

// parseYAML returns the document's root node, or nil after reporting why
// there is none.
func parseYAML(p *problems, data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.add(nil, "", true, "the file is empty; it needs rules: or default:")
		} else {
			p.syntax(data, err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.add(&extra, "", true, "a second YAML document: a rules file is one document")
	case !errors.Is(err, io.EOF):
		p.syntax(data, err)
	}
	if len(doc.Content) == 0 || isNull(resolveAlias(doc.Content[0])) {
		p.add(nil, "", true, "the file is empty; it needs rules: or default:")
		return nil
	}
	return doc.Content[0]
}

// kfAccount is the form of a customer-service account: a prefix, @, the
// official account's WeChat id. Anything else makes every send fail.
var kfAccount = regexp.MustCompile(`^[^@\s]+@[^@\s]+$`)

// syntax reports a syntax error of yaml.v3 at the place it is in data (see
// locateSyntax): yaml.v3's messages give a line and no column, and the
// line is often that of the construct the problem is in, not the problem's.
func (p *problems) syntax(data []byte, err error) {
	line, col, msg := locateSyntax(data, err.Error())
	if line == 0 {
		p.add(nil, "", true, "YAML syntax: %s", msg)
		return
	}
	p.add(&yaml.Node{Line: line, Column: col}, "", true, "YAML syntax: %s", msg)
}

// err returns the problems as a *LoadError, nil when there are no errors
// (warnings alone are no error).
func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &LoadError{Problems: sortProblems(p.list), Warnings: sortProblems(p.warnings)}
}

// sortProblems sorts list in file order, keeping the order of problems at
// the same place, and returns it.
func sortProblems(list []Problem) []Problem {
	slices.SortStableFunc(list, func(a, b Problem) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	})
	return list
}

// contentHash names a version of the file in logs: the first 12 hex
// digits of its SHA-256.
func contentHash(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:6])
}
