package rules

import (
	"strings"
	"unicode/utf8"

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
// nothing to fold: ASCII without capitals, and text made only of runes
// that have no case at all, as Chinese text is.
func foldCase(s string) string {
	if isASCII(s) {
		for i := 0; i < len(s); i++ {
			if 'A' <= s[i] && s[i] <= 'Z' {
				return strings.ToLower(s)
			}
		}
		return s
	}
	// Invalid UTF-8 ranges as U+FFFD, which is not caseless: x/text
	// decides what becomes of it.
	for _, r := range s {
		if !caseless(r) {
			return caseFolder.String(s)
		}
	}
	return s
}

// caseless reports whether r is one of the runes that case folding
// leaves alone and that make up most of what users type: ASCII other than
// capitals, and the CJK, kana, Hangul, punctuation and emoji blocks, none
// of which has case. A rune outside these is simply folded by x/text;
// TestCaselessRunesDoNotFold holds the ranges to what x/text does.
//
// This replaces a check that handed the string's bytes to x/text through
// unsafe: it was as fast, but its safety rested on x/text never writing to
// the source buffer, which nothing documents.
func caseless(r rune) bool {
	for _, rg := range caselessRanges {
		if r < rg[0] {
			return false
		}
		if r <= rg[1] {
			return true
		}
	}
	return false
}

// caselessRanges are ascending, inclusive ranges of runes without case.
var caselessRanges = [...][2]rune{
	{0x00, 0x40},       // ASCII up to @
	{0x5b, 0x7f},       // ASCII from [ on: a-z and punctuation
	{0x2000, 0x206f},   // General Punctuation: “ ” … ‧
	{0x3000, 0x30ff},   // CJK Symbols and Punctuation, Hiragana, Katakana
	{0x3400, 0x4dbf},   // CJK Unified Ideographs Extension A
	{0x4e00, 0x9fff},   // CJK Unified Ideographs
	{0xac00, 0xd7a3},   // Hangul Syllables
	{0xfe30, 0xfe4f},   // CJK Compatibility Forms
	{0xff01, 0xff20},   // full-width punctuation and digits
	{0xff3b, 0xff40},   // full-width [ to `
	{0xff5b, 0xffef},   // full-width { on, half-width forms
	{0x1f000, 0x1faff}, // emoji and pictographs
	{0x20000, 0x3134f}, // CJK Unified Ideographs Extensions B to G
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
