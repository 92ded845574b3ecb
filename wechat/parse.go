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
	// The flat messages WeChat sends take the hand-written scanner of
	// flatxml.go; everything else, every error included, is
	// parseMessageStd's, which the scanner never contradicts.
	if m, ok := parseFlat(body); ok {
		return m, nil
	}
	return parseMessageStd(body)
}

// parseMessageStd is ParseMessage on encoding/xml: the reference the fast
// path of flatxml.go must agree with, and the path for every body the
// fast path does not take.
func parseMessageStd(body []byte) (*Message, error) {
	// A directive can only hide behind "<!" that opens neither a comment
	// nor CDATA. Only a body with such a "<!" pays for a full token-by-token
	// check first; every body is decoded in a single pass, its prolog and
	// epilog checked by hand around the root.
	if mayHoldDirective(body) {
		if err := checkShape(body); err != nil {
			return nil, err
		}
	}
	sc := &shapeChecker{d: newStrictDecoder(body)}
	root, err := sc.root()
	if err != nil {
		return nil, err
	}
	m := new(Message)
	if err := sc.d.DecodeElement(m, &root); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	sc.depth = 0
	if err := sc.drain(); err != nil {
		return nil, err
	}
	m.MsgType = strings.TrimSpace(m.MsgType)
	m.Event = strings.TrimSpace(m.Event)
	return m, nil
}

// mayHoldDirective reports whether body has a "<!" that does not open a
// comment or a CDATA section.
func mayHoldDirective(body []byte) bool {
	for i := 0; ; {
		j := bytes.Index(body[i:], []byte("<!"))
		if j < 0 {
			return false
		}
		rest := body[i+j:]
		if !bytes.HasPrefix(rest, []byte("<![CDATA[")) && !bytes.HasPrefix(rest, []byte("<!--")) {
			return true
		}
		i += j + 2
	}
}

// checkShape reads every token once: well-formedness, no directives, a
// single root named xml.
func checkShape(body []byte) error {
	sc := &shapeChecker{d: newStrictDecoder(body)}
	return sc.drain()
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

// shapeChecker reads tokens while checking the document's shape:
// well-formed, no directives, a single root named xml, no text outside it.
// Its first error sticks.
type shapeChecker struct {
	d            *xml.Decoder
	depth, roots int
	err          error
}

func (s *shapeChecker) Token() (xml.Token, error) {
	if s.err != nil {
		return nil, s.err
	}
	tok, err := s.d.Token()
	if err == io.EOF {
		if s.roots == 0 {
			s.err = fmt.Errorf("%w: no root element", ErrMalformed)
			return nil, s.err
		}
		return nil, io.EOF
	}
	if err != nil {
		s.err = fmt.Errorf("%w: %v", ErrMalformed, err)
		return nil, s.err
	}
	switch t := tok.(type) {
	case xml.Directive:
		s.err = fmt.Errorf("%w: found %s", ErrDoctype, directiveName(t))
	case xml.StartElement:
		if s.depth == 0 {
			s.roots++
			if s.roots > 1 {
				s.err = fmt.Errorf("%w: more than one root element", ErrMalformed)
			} else if t.Name.Local != "xml" || t.Name.Space != "" {
				s.err = fmt.Errorf("%w: root element is %q, want <xml>", ErrMalformed, shortName(t.Name))
			}
		}
		s.depth++
	case xml.EndElement:
		s.depth--
	case xml.CharData:
		if s.depth == 0 && len(bytes.Trim(t, " \t\r\n")) > 0 {
			s.err = fmt.Errorf("%w: text outside the root element", ErrMalformed)
		}
	}
	if s.err != nil {
		return nil, s.err
	}
	return tok, nil
}

// root reads the prolog and returns the root element's start.
func (s *shapeChecker) root() (xml.StartElement, error) {
	for {
		tok, err := s.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		if start, ok := tok.(xml.StartElement); ok {
			return start, nil
		}
	}
}

// drain reads the rest of the document, checking every token.
func (s *shapeChecker) drain() error {
	for {
		if _, err := s.Token(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
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
