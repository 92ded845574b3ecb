package rules

import (
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// yaml.v3 reports a syntax error as "yaml: line N: problem", with no
// column, and N is often not where the problem is: for the parser's
// errors it is the line (counted from 0) where the enclosing construct
// began — an unclosed [ on line 3 reads "line 2" — and for the scanner's,
// the line where the scalar or key being scanned began. locateSyntax
// finds the place itself: it scans the file for what each kind of error
// comes from (a tab in an indentation, a bracket never closed, a quote
// never closed, a line indented to no level of the lines above) and
// reports it where it is, falling back on yaml.v3's line.

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are the problems of yaml.v3's parser, whose line is the
// enclosing construct's, counted from 0; the scanner's count from 1.
var parserProblems = []string{
	"did not find expected <document start>", "did not find expected node content",
	"did not find expected key", "did not find expected '-' indicator",
	"did not find expected ',' or ']'", "did not find expected ',' or '}'",
	"found duplicate %YAML directive", "found incompatible YAML document",
	"found duplicate %TAG directive", "found undefined tag handle",
}

// locateSyntax returns the line and column (1-based) of the syntax error
// yaml.v3 reported as errText in data, and the message to give; line is 0
// when nothing in the message or the file says where it is.
func locateSyntax(data []byte, errText string) (line, col int, msg string) {
	msg = strings.TrimPrefix(errText, "yaml: ")
	reported, hasLine := 0, false
	if m := yamlLine.FindStringSubmatch(errText); m != nil {
		reported, _ = strconv.Atoi(m[1])
		msg, hasLine = m[2], true
	}
	parser := false
	for _, p := range parserProblems {
		if strings.HasPrefix(msg, p) {
			parser = true
		}
	}
	if !hasLine {
		// yaml.v3 leaves the line out when it is the first (0 counted
		// from 0), and for the reader's errors, which have none.
		if line, col, ok := locateBadCharacter(data, msg); ok {
			return line, col, msg
		}
	}
	// The line yaml.v3 means, counted from 1: for the parser's errors the
	// construct's first line, from which the scan below looks on.
	from := reported
	if parser || !hasLine {
		from = reported + 1
	}
	s := scanYAML(data)
	at := func(p *spot, why string) (int, int, string) {
		if why != "" {
			return p.line, p.col, why + " (" + msg + ")"
		}
		return p.line, p.col, msg
	}
	switch {
	case strings.Contains(msg, "tab character"):
		if s.tab != nil {
			return at(s.tab, "a tab in the indentation: indent with spaces")
		}
	case strings.Contains(msg, "',' or ']'"), strings.Contains(msg, "',' or '}'"),
		strings.Contains(msg, "node content") && s.flow != nil:
		if s.flow != nil {
			return at(s.flow, s.flowWhy)
		}
	case strings.Contains(msg, "end of stream"), strings.Contains(msg, "could not find expected ':'"),
		strings.Contains(msg, "document indicator"):
		switch {
		case s.quote != nil:
			return at(s.quote, s.quoteWhy)
		case s.flow != nil:
			return at(s.flow, s.flowWhy)
		case s.multiline != nil && s.multiline.line <= max(from, 1):
			return at(s.multiline, s.multilineWhy)
		}
	case strings.Contains(msg, "cannot start any token"):
		if c := badTokenColumn(lineOf(data, from)); c > 0 {
			return from, c, msg
		}
	case strings.HasPrefix(msg, "mapping values are not allowed"):
		// key: value: more — a colon and a space in a plain value.
		if c := secondColonColumn(lineOf(data, from)); c > 0 && (s.indent == nil || s.indent.line != from) {
			return from, c, msg + ": a value with \": \" in it needs quotes"
		}
	}
	if structural(msg) {
		// The scanner's line is the problem's: take the indentation
		// problem only if it is on that line. The parser's line is where
		// the construct began: the problem is at or after it.
		if p := s.indent; p != nil && (p.line == from || parser && p.line >= from) {
			return at(p, s.indentWhy)
		}
		if s.multiline != nil && s.multiline.line <= from+1 {
			return at(s.multiline, s.multilineWhy)
		}
	}
	return from, firstColumn(lineOf(data, from)), msg
}

// locateBadCharacter finds what the reader's errors are about: the first
// byte that is not UTF-8, or the first character YAML does not allow.
func locateBadCharacter(data []byte, msg string) (line, col int, ok bool) {
	utf, control := strings.Contains(msg, "UTF-8"), strings.Contains(msg, "control characters")
	if !utf && !control {
		return 0, 0, false
	}
	line, col = 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if utf && r == utf8.RuneError && size <= 1 || control && !yamlAllowed(r) {
			return line, col, true
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i += size
	}
	return 0, 0, false
}

// yamlAllowed reports whether YAML allows r in a document.
func yamlAllowed(r rune) bool {
	switch {
	case r == '\t', r == '\n', r == '\r', r >= 0x20 && r <= 0x7E, r == 0x85,
		r >= 0xA0 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= 0x10FFFF:
		return true
	}
	return false
}

// secondColonColumn finds, on a line "key: value: more", the colon that
// makes the value a mapping: the second ": " outside quotes and brackets;
// 0 when there is none.
func secondColonColumn(text string) int {
	rs := runes(stripComment(text))
	var quote rune
	depth, seen := 0, 0
	for i, r := range rs {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'':
			if i == 0 || rs[i-1] == ' ' {
				quote = r
			}
		case r == '[' || r == '{':
			depth++
		case r == ']' || r == '}':
			depth--
		case r == ':' && depth == 0 && (i+1 == len(rs) || rs[i+1] == ' '):
			if seen++; seen == 2 {
				return i + 1
			}
		}
	}
	return 0
}

// structural reports whether msg is a problem with the block structure,
// which comes from a line indented wrongly.
func structural(msg string) bool {
	for _, p := range []string{"did not find expected key", "did not find expected '-' indicator",
		"mapping values are not allowed", "block sequence entries are not allowed",
		"did not find expected node content", "could not find expected ':'"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// badTokenColumn finds the character that cannot start a token (@ or `,
// reserved by YAML) on a line; 0 when there is none.
func badTokenColumn(text string) int {
	prev := ' '
	for col, r := range runes(text) {
		if (r == '@' || r == '`') && (prev == ' ' || strings.ContainsRune("[{,:-", prev)) {
			return col + 1
		}
		prev = r
	}
	return 0
}

// lineOf returns line n (1-based) of data, "" past the end.
func lineOf(data []byte, n int) string {
	lines := strings.Split(string(data), "\n")
	if n < 1 || n > len(lines) {
		return ""
	}
	return strings.TrimSuffix(lines[n-1], "\r")
}

// firstColumn is the column of the first character that is not a space
// on a line, 1 on a blank one.
func firstColumn(text string) int {
	for col, r := range runes(text) {
		if r != ' ' && r != '\t' {
			return col + 1
		}
	}
	return 1
}

// runes returns the characters of text: columns count characters, as
// yaml.v3's do.
func runes(text string) []rune {
	if utf8.ValidString(text) {
		return []rune(text)
	}
	return []rune(strings.ToValidUTF8(text, "\uFFFD"))
}
