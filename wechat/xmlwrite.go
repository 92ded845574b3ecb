package wechat

import (
	"bytes"
	"encoding/xml"
	"strings"
	"unicode/utf8"
)

// writeCDATA writes s as CDATA the way WeChat writes its XML. A "]]>"
// inside s would end the section early, so the section is split between
// "]]" and ">". Characters XML cannot carry at all (most control
// characters, invalid UTF-8) become U+FFFD, as xml.EscapeText does, so
// the output always parses.
func writeCDATA(b *bytes.Buffer, s string) {
	b.WriteString("<![CDATA[")
	for {
		i := strings.Index(s, "]]>")
		if i < 0 {
			break
		}
		writeXMLChars(b, s[:i+2])
		b.WriteString("]]><![CDATA[")
		s = s[i+2:]
	}
	writeXMLChars(b, s)
	b.WriteString("]]>")
}

// writeText writes s as escaped character data, for the few values WeChat
// writes without CDATA (CreateTime, TimeStamp, ArticleCount).
func writeText(b *bytes.Buffer, s string) {
	// EscapeText only fails when the writer does; bytes.Buffer never does.
	_ = xml.EscapeText(b, []byte(s))
}

// writeXMLChars copies s, replacing what XML 1.0 cannot represent.
func writeXMLChars(b *bytes.Buffer, s string) {
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		if (r == utf8.RuneError && size == 1) || !isXMLChar(r) {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[:size])
		}
		s = s[size:]
	}
}

// isXMLChar reports whether r is in XML 1.0's Char production.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}
