package wechat

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Errors of ParseMessage; it wraps them with detail, test with errors.Is.
var (
	// ErrDoctype: the body declares a DOCTYPE, ENTITY or other DTD
	// markup. WeChat never sends one; it is how XML entity attacks start.
	ErrDoctype = errors.New("wechat: XML declares a DOCTYPE or ENTITY")
	// ErrMalformed: the body is not well-formed XML with one <xml> root.
	ErrMalformed = errors.New("wechat: malformed message XML")
)

// ParseMessage parses a callback body: a plaintext message, the outer
// envelope of an encrypted one, or the plaintext Decrypt returned.
//
// It accepts exactly one <xml> root and nothing around it but whitespace,
// comments and the XML declaration. Any DTD declaration fails with
// ErrDoctype; anything else that is not well-formed fails with
// ErrMalformed. Unknown tags and unknown MsgType or Event values parse
// fine: unknown tags land in Message.Unknown.
func ParseMessage(body []byte) (*Message, error) {
	// Two passes over a body of at most a few KiB: the first checks the
	// document's shape token by token, the second decodes with the plain
	// encoding/xml decoder, the only one that can fill innerxml fields.
	if err := checkShape(body); err != nil {
		return nil, err
	}
	d := newStrictDecoder(body)
	m := new(Message)
	if err := d.Decode(m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	m.MsgType = strings.TrimSpace(m.MsgType)
	m.Event = strings.TrimSpace(m.Event)
	return m, nil
}

// newStrictDecoder returns a decoder that knows only XML's five
// predefined entities and no character sets but UTF-8.
func newStrictDecoder(body []byte) *xml.Decoder {
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	d.Entity = nil
	d.CharsetReader = nil
	return d
}

// checkShape reads every token once: well-formedness, no directives, a
// single root named xml.
func checkShape(body []byte) error {
	d := newStrictDecoder(body)
	depth, roots := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			return fmt.Errorf("%w: found %s", ErrDoctype, directiveName(t))
		case xml.StartElement:
			if depth == 0 {
				roots++
				if roots > 1 {
					return fmt.Errorf("%w: more than one root element", ErrMalformed)
				}
				if t.Name.Local != "xml" || t.Name.Space != "" {
					return fmt.Errorf("%w: root element is %q, want <xml>", ErrMalformed, shortName(t.Name))
				}
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.Trim(t, " \t\r\n")) > 0 {
				return fmt.Errorf("%w: text outside the root element", ErrMalformed)
			}
		}
	}
	if roots == 0 {
		return fmt.Errorf("%w: no root element", ErrMalformed)
	}
	return nil
}

// shortName names an element for an error message, cut short.
func shortName(n xml.Name) string {
	s := n.Local
	if n.Space != "" {
		s = n.Space + ":" + s
	}
	return truncate(s, 32)
}

// directiveName names a directive by its first word, for the error.
func directiveName(d xml.Directive) string {
	word := ""
	if f := strings.Fields(string(d)); len(f) > 0 {
		word = f[0]
	}
	return strconv.Quote("<!" + truncate(word, 16))
}

// truncate cuts s to at most n bytes without splitting a character, so
// untrusted names stay short in error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
