package rules

import (
	"strings"
	"unicode/utf8"
	"unsafe"

	"golang.org/x/text/cases"
	"golang.org/x/text/width"
)

// Text is compared the way people type it on a phone: surrounding spaces
// do not count, nor case, nor full-width against half-width forms (an IME
// in full-width mode types ＨＥＬＬＯ for hello). Patterns and the inbound
// text go through the same functions, once each: patterns at load, the
// text once per message.

// widen returns s trimmed and width-folded: full-width ASCII becomes ASCII,
// half-width katakana becomes full-width. Regexes run on this form, so
// their groups keep the user's case but read ASCII digits and letters.
func widen(s string) string {
	if !isASCII(s) && needsWidthFold(s) {
		s = width.Fold.String(s)
	}
	return strings.TrimSpace(s)
}

// needsWidthFold reports whether width.Fold would change s. Checking first
// spares the transformer's buffers for the usual message, which has
// nothing to fold.
func needsWidthFold(s string) bool {
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		p, size := width.LookupString(s[i:])
		if p.Folded() != 0 {
			return true
		}
		i += size
	}
	return false
}

// normalize returns s widened and case-folded: the form that equals,
// contains and prefix compare.
func normalize(s string) string {
	return foldCase(widen(s))
}

// caseFolder applies Unicode full case folding; x/text documents the Fold
// Caser as stateless and safe for concurrent use, so one serves all.
var caseFolder = cases.Fold()

// foldCase applies Unicode case folding without allocating when there is
// nothing to fold, as in Chinese text.
func foldCase(s string) string {
	if isASCII(s) {
		for i := 0; i < len(s); i++ {
			if 'A' <= s[i] && s[i] <= 'Z' {
				return strings.ToLower(s)
			}
		}
		return s
	}
	// Span only reads src, so it may look at the string's bytes in place
	// rather than at a copy.
	if n, err := caseFolder.Span(unsafe.Slice(unsafe.StringData(s), len(s)), true); err == nil && n == len(s) {
		return s
	}
	return caseFolder.String(s)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
