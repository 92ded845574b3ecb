package rules

import (
	"regexp"
	"regexp/syntax"
	"unicode/utf8"

	"golang.org/x/text/width"
)

// compileRegexes compiles each regex case-insensitively (text is compared
// case-folded everywhere) and finds a string every match must contain,
// which lets the index try the regex only on texts containing it.
func (c *compiler) compileRegexes(path string, list stringList, cond *condition) {
	for i, src := range list {
		elem := c.elem(path, i)
		at := c.node(elem)
		if src == "" {
			c.add(at, elem, false, "empty regex")
			continue
		}
		re, err := regexp.Compile("(?i)" + src)
		if err != nil {
			// Report the pattern as written, without the (?i) added.
			if _, e := regexp.Compile(src); e != nil {
				err = e
			}
			c.add(at, elem, false, "%v", err)
			continue
		}
		if tree, err := syntax.Parse(src, syntax.Perl); err == nil {
			if r, ok := foldedAway(tree); ok {
				c.add(at, elem, false, "%q never matches: regexes see the text width-folded (full-width ＡＢＣ１２３ reads as ABC123, half-width ｶﾅ as カナ); write `%s`",
					string(r), regexp.QuoteMeta(width.Fold.String(string(r))))
				continue
			}
		}
		lit := ""
		if tree, err := syntax.Parse("(?i)"+src, syntax.Perl); err == nil {
			lit = normalize(requiredLiteral(tree))
		}
		cond.regexes = append(cond.regexes, re)
		cond.literals = append(cond.literals, lit)
	}
}

// foldedAway finds a rune re requires that width folding removes from
// every text, so that re can never match: a literal such as the ｈ of
// `^ｈｉ`, or a class all of whose runes fold, as [０-９] does. A class
// with some runes that fold ([0-9０-９]) is harmless and not reported.
func foldedAway(re *syntax.Regexp) (rune, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			if folds(r) {
				return r, true
			}
		}
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				if !folds(r) {
					return 0, false
				}
			}
		}
		if len(re.Rune) > 0 {
			return re.Rune[0], true
		}
	default:
		for _, sub := range re.Sub {
			if r, ok := foldedAway(sub); ok {
				return r, true
			}
		}
	}
	return 0, false
}

// folds reports whether width folding changes r, which then never
// appears in the text a regex sees.
func folds(r rune) bool {
	return r >= utf8.RuneSelf && width.LookupRune(r).Folded() != 0
}

// requiredLiteral returns a string that every match of re contains, the
// longest such it finds by looking at literals that cannot be skipped, or
// "" when there is none.
func requiredLiteral(re *syntax.Regexp) string {
	switch re.Op {
	case syntax.OpLiteral:
		return string(re.Rune)
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiteral(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredLiteral(re.Sub[0])
		}
	case syntax.OpConcat:
		best := ""
		for _, sub := range re.Sub {
			if l := requiredLiteral(sub); len(l) > len(best) {
				best = l
			}
		}
		return best
	}
	return ""
}
