package rules

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// scanYAML is the reading of a file that locateSyntax (syntax.go) relies
// on when yaml.v3 refuses it: not a YAML parser, only enough of one to
// find the suspects of each kind of syntax error.

// spot is a place in the file, 1-based; col counts characters.
type spot struct{ line, col int }

// yamlScan is what scanYAML found: the first of each kind of suspect.
type yamlScan struct {
	tab          *spot // a tab in the indentation of a line with content
	flow         *spot // a bracket never closed, or closed by the wrong one
	flowWhy      string
	quote        *spot // a quoted string never closed
	quoteWhy     string
	multiline    *spot // a quoted string closed only on a later line
	multilineWhy string
	indent       *spot // a line indented to no level of the lines above
	indentWhy    string
}

type opener struct {
	ch        rune
	line, col int
	indent    int // of the line it is on
}

// scanYAML reads data as YAML closely enough to find the suspects above:
// it follows comments, quoted strings, block scalars, flow brackets and
// the indentation of block mappings and lists, and nothing else.
func scanYAML(data []byte) *yamlScan {
	s := &yamlScan{}
	var (
		quote   rune // '"' or '\'' while in a quoted string
		quoteAt spot
		flows   []opener
		blockOf = -1 // while in a block scalar: the indentation of its key's line
		levels  []int
		opens   bool // the last content line opened a block (key: with no value, a lone -)
		lines   = strings.Split(string(data), "\n")
	)
	for i, text := range lines {
		ln := i + 1
		text = strings.TrimSuffix(text, "\r")
		indent := len(text) - len(strings.TrimLeft(text, " "))
		trimmed := strings.TrimLeft(text, " \t")
		blank := trimmed == "" || strings.HasPrefix(trimmed, "#")
		if blockOf >= 0 {
			if trimmed == "" || indent > blockOf {
				continue
			}
			blockOf = -1
		}
		if quote == 0 && len(flows) == 0 && !blank {
			if ws := text[:len(text)-len(trimmed)]; s.tab == nil && strings.Contains(ws, "\t") {
				s.tab = &spot{ln, strings.IndexByte(ws, '\t') + 1}
			}
			if text == "---" || strings.HasPrefix(text, "--- ") || text == "..." {
				levels, opens = nil, false
				continue
			}
			s.checkIndent(ln, text, indent, &levels, &opens)
		}
		if quote == 0 && len(flows) > 0 && !blank && indent <= flows[0].indent && !strings.ContainsAny(trimmed[:1], "]}") {
			// A line back at the indentation of the bracket's line: the
			// bracket was never closed.
			s.unclosed(flows[len(flows)-1])
			flows = nil
			s.checkIndent(ln, text, indent, &levels, &opens)
		}
		rs := runes(text)
		prev := ' '
	chars:
		for col := 0; col < len(rs); col++ {
			r := rs[col]
			switch quote {
			case '"':
				switch r {
				case '\\':
					col++ // the next character is escaped
				case '"':
					quote, prev = 0, r
					s.closedQuote(quoteAt, ln)
				}
				continue
			case '\'':
				if r == '\'' {
					if col+1 < len(rs) && rs[col+1] == '\'' {
						col++ // '' is a quote inside the string
						continue
					}
					quote, prev = 0, r
					s.closedQuote(quoteAt, ln)
				}
				continue
			}
			tokenStart := prev == ' ' || prev == '\t' || len(flows) > 0 && strings.ContainsRune("[{,:", prev)
			switch {
			case r == '#' && (prev == ' ' || prev == '\t'):
				break chars
			case (r == '"' || r == '\'') && tokenStart:
				quote, quoteAt = r, spot{ln, col + 1}
			case (r == '[' || r == '{') && (tokenStart || len(flows) > 0):
				flows = append(flows, opener{r, ln, col + 1, indent})
			case (r == ']' || r == '}') && len(flows) > 0:
				top := flows[len(flows)-1]
				flows = flows[:len(flows)-1]
				if want := closerOf(top.ch); r != want && s.flow == nil {
					s.flow = &spot{ln, col + 1}
					s.flowWhy = fmt.Sprintf("%c does not close the %c at line %d column %d: %c does", r, top.ch, top.line, top.col, want)
				}
			case (r == '|' || r == '>') && tokenStart && len(flows) == 0 && blockHeader(string(rs[col+1:])):
				blockOf = indent
				opens = false
				break chars
			}
			prev = r
		}
	}
	switch {
	case quote != 0:
		s.quote = &quoteAt
		s.quoteWhy = fmt.Sprintf("the string opened by this %c is never closed", quote)
	case len(flows) > 0:
		s.unclosed(flows[len(flows)-1])
	}
	return s
}

func closerOf(open rune) rune {
	if open == '[' {
		return ']'
	}
	return '}'
}

func (s *yamlScan) unclosed(o opener) {
	if s.flow == nil {
		s.flow = &spot{o.line, o.col}
		s.flowWhy = fmt.Sprintf("this %c is never closed: close it with %c", o.ch, closerOf(o.ch))
	}
}

func (s *yamlScan) closedQuote(at spot, ln int) {
	if at.line != ln && s.multiline == nil {
		p := at
		s.multiline = &p
		s.multilineWhy = fmt.Sprintf("the string opened here runs on to line %d: is its closing quote missing?", ln)
	}
}

// checkIndent follows the block structure through one content line: the
// indentation levels open above it, and whether the line before opened a
// new one. A line deeper than the innermost level that the line before
// did not open, or between two levels, belongs to none.
func (s *yamlScan) checkIndent(ln int, text string, indent int, levels *[]int, opens *bool) {
	code := stripComment(text)
	rest := strings.TrimSpace(code)
	if rest == "" {
		return
	}
	lv := *levels
	for len(lv) > 0 && lv[len(lv)-1] > indent {
		lv = lv[:len(lv)-1]
	}
	keyLike := strings.HasSuffix(rest, ":") || strings.Contains(rest, ": ") || strings.HasPrefix(rest, "- ") || rest == "-"
	switch top := -1; {
	case len(lv) > 0 && lv[len(lv)-1] == indent:
	case len(lv) > 0 && !*opens && !keyLike:
		// A plain scalar going on at a deeper indentation: legal.
		*levels = lv
		return
	case len(lv) > 0 && !*opens:
		top = lv[len(lv)-1]
		if s.indent == nil {
			s.indent = &spot{ln, indent + 1}
			if *levels != nil && len(*levels) > len(lv) {
				s.indentWhy = fmt.Sprintf("this line is indented %s, between the levels of the lines above (%d and %d)",
					spaces(indent), top, (*levels)[len(lv)])
			} else {
				s.indentWhy = fmt.Sprintf("this line is indented %s, deeper than the line above it (%d) without a key that opens a block there",
					spaces(indent), top)
			}
		}
		lv = append(lv, indent)
	default:
		lv = append(lv, indent)
	}
	// "- " items open a level at their content: "  - name: a" has the
	// list at 2 and the mapping at 4.
	col := indent
	for strings.HasPrefix(rest, "- ") {
		n := len(rest) - len(strings.TrimLeft(rest[1:], " ")) // "-" and the spaces after it
		col += n
		rest = rest[n:]
		lv = append(lv, col)
	}
	*levels = lv
	*opens = rest == "-" || blockOpener.MatchString(rest)
}

func spaces(n int) string {
	if n == 1 {
		return "1 space"
	}
	return strconv.Itoa(n) + " spaces"
}

// blockOpener is the end of a line after which a block opens: a key with
// no value (perhaps with an anchor or a tag), or a lone "-".
var blockOpener = regexp.MustCompile(`(:|^-)(\s+[&!]\S*)?$`)

// stripComment drops a comment from a line (a # after a space, outside
// quotes).
func stripComment(text string) string {
	var quote rune
	prev := ' '
	for i, r := range text {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case (r == '"' || r == '\'') && (prev == ' ' || strings.ContainsRune("[{,:", prev)):
			quote = r
		case r == '#' && (prev == ' ' || prev == '\t'):
			return text[:i]
		}
		prev = r
	}
	return text
}

// blockHeader reports whether rest, what follows a | or >, is a block
// scalar's header: indicators (digits, + or -), then nothing or a comment.
func blockHeader(rest string) bool {
	rest = strings.TrimLeft(rest, "0123456789+-")
	rest = strings.TrimLeft(rest, " \t")
	return rest == "" || rest[0] == '#'
}
