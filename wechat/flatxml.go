package wechat

import (
	"bytes"
	"encoding/xml"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file is ParseMessage's fast path: a hand-written scanner for the
// flat XML WeChat actually sends. It is an optimisation only; the
// encoding/xml path (parseMessageStd) stays the reference, and parseFlat
// must never disagree with it.
//
// The fast grammar; anything else falls back:
//
//	document = S? [decl S?] root S?
//	root     = "<xml/>" | "<xml>" (S? child)* S? "</xml>"
//	decl     = `<?xml version="1.0"` [` encoding="` utf-8 `"`] S? "?>"
//	child    = "<" name ">" content "</" name ">" | "<" name "/>"
//	content  = (text | "<![CDATA[" chars "]]>")*
//	name     = [A-Za-z_] [A-Za-z0-9_.-]*
//	S        = (" " | "\t" | "\r" | "\n")+
//
// where utf-8 is any letter case and the quotes are double quotes only.
//
// Decisions:
//
//   - parseFlat never fails. It either returns the very Message
//     parseMessageStd would return for the body, or reports that the body
//     left the fast grammar, and ParseMessage then runs parseMessageStd.
//     Every error, ErrDoctype and ErrMalformed alike, therefore comes from
//     the encoding/xml path, unchanged; so does every Message of an
//     unusual body.
//
//   - Attributes, white space inside tags, namespace prefixes, comments,
//     processing instructions, directives, nested elements, text that is
//     not white space directly inside <xml>, and a byte order mark all
//     fall back, as the grammar says. So do the names of Message's struct
//     fields (ScanCodeInfo, SendPicsInfo, SendLocationInfo,
//     SubscribeMsg*Event), whatever their content, since encoding/xml
//     allocates the struct even for an empty element.
//
//   - Character data is decoded as encoding/xml's Decoder.text does: the
//     five predefined entities, &#N; and &#xH; references (a value that is
//     a surrogate or outside XML's Char range falls back), "\r\n" and a
//     lone "\r" become "\n" in text and CDATA alike (a "\r" written as
//     &#13; stays), "]]>" in text falls back, and so does invalid UTF-8 or
//     any character outside XML's Char production (controls, U+FFFE,
//     U+FFFF). White space around or between CDATA sections is part of the
//     value, as encoding/xml keeps it.
//
//   - Values are converted as encoding/xml's copyValue does: strings as
//     they are; int and int64 fields 0 when empty, else
//     strconv.ParseInt(TrimSpace(v), 10, bits); float64 fields 0 when
//     empty, else strconv.ParseFloat(TrimSpace(v), 64). A value those
//     refuse falls back, and encoding/xml then reports the error.
//
//   - Names are matched case-sensitively against the struct tags, as
//     encoding/xml does; a repeated element overwrites the field (the last
//     one wins, an empty one sets zero), and every element without a field
//     is appended to Message.Unknown, in order, with an empty namespace;
//     Unknown stays nil when there is none. MsgType and Event are trimmed
//     afterwards, as ParseMessage always did.
//
//   - Allocation: the Message, one string per string value kept (none
//     for numbers; the documented MsgType and Event values are
//     constants), and for an unknown element its name, its value and the
//     slice. A value that is one plain segment of the body is converted
//     straight from the body; a value that needs decoding (entities, CR,
//     several segments) is built in a scratch buffer that lives on the
//     stack for short values. The Message is built on the stack and
//     copied to the heap only once the whole body is accepted.

// parseFlat parses body if it is in the fast grammar above. ok is false
// when it is not; m is then nil and the caller must use parseMessageStd.
func parseFlat(body []byte) (m *Message, ok bool) {
	s := flatScanner{b: body}
	return s.message()
}

// flatScanner reads b from pos.
type flatScanner struct {
	b   []byte
	pos int
}

func (s *flatScanner) message() (*Message, bool) {
	s.skipSpace()
	if bytes.HasPrefix(s.b[s.pos:], []byte("<?")) {
		if !s.decl() {
			return nil, false
		}
		s.skipSpace()
	}
	// The Message is built on the stack and copied out only on success,
	// so that a body that falls back half way pays less for it.
	m := Message{XMLName: xml.Name{Local: "xml"}}
	switch rest := s.b[s.pos:]; {
	case bytes.HasPrefix(rest, []byte("<xml/>")):
		s.pos += len("<xml/>")
	case bytes.HasPrefix(rest, []byte("<xml>")):
		s.pos += len("<xml>")
		if !s.children(&m) {
			return nil, false
		}
	default:
		return nil, false
	}
	s.skipSpace()
	if s.pos != len(s.b) {
		return nil, false
	}
	m.MsgType = strings.TrimSpace(m.MsgType)
	m.Event = strings.TrimSpace(m.Event)
	out := new(Message)
	*out = m
	return out, true
}

// decl reads the XML declaration at pos, if it is one of the plain forms
// encoding/xml accepts without a CharsetReader.
func (s *flatScanner) decl() bool {
	rest := s.b[s.pos:]
	const start = `<?xml version="1.0"`
	if !bytes.HasPrefix(rest, []byte(start)) {
		return false
	}
	i := len(start)
	if enc := ` encoding="`; bytes.HasPrefix(rest[i:], []byte(enc)) {
		i += len(enc)
		if len(rest) < i+6 || !bytes.EqualFold(rest[i:i+5], []byte("utf-8")) || rest[i+5] != '"' {
			return false
		}
		i += 6
	}
	for i < len(rest) && isFlatSpace(rest[i]) {
		i++
	}
	if !bytes.HasPrefix(rest[i:], []byte("?>")) {
		return false
	}
	s.pos += i + 2
	return true
}

func isFlatSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

func (s *flatScanner) skipSpace() {
	for s.pos < len(s.b) && isFlatSpace(s.b[s.pos]) {
		s.pos++
	}
}

// children reads the children of <xml> and its end tag.
func (s *flatScanner) children(m *Message) bool {
	// buf holds the values that cannot be sliced out of the body. It is a
	// local, passed through content, so that it stays on the stack.
	var scratch [512]byte
	buf := scratch[:0]
	for {
		s.skipSpace()
		rest := s.b[s.pos:]
		if len(rest) < 2 || rest[0] != '<' {
			return false
		}
		if rest[1] == '/' {
			if !bytes.HasPrefix(rest, []byte("</xml>")) {
				return false
			}
			s.pos += len("</xml>")
			return true
		}
		s.pos++
		name, ok := s.name()
		if !ok || s.pos >= len(s.b) {
			return false
		}
		var val []byte
		switch s.b[s.pos] {
		case '/':
			if s.pos+1 >= len(s.b) || s.b[s.pos+1] != '>' {
				return false
			}
			s.pos += 2
		case '>':
			s.pos++
			if val, buf, ok = s.content(buf[:0]); !ok {
				return false
			}
			// The end tag: "</" name ">".
			rest := s.b[s.pos:]
			if len(rest) < len(name)+3 || rest[1] != '/' ||
				!bytes.Equal(rest[2:2+len(name)], name) || rest[2+len(name)] != '>' {
				return false
			}
			s.pos += len(name) + 3
		default:
			return false
		}
		if !m.setFlat(name, val) {
			return false
		}
	}
}

// name reads an element name at pos; it must be followed by '>' or '/'
// for the element to stay in the fast grammar, which the caller checks.
func (s *flatScanner) name() ([]byte, bool) {
	start := s.pos
	if start >= len(s.b) {
		return nil, false
	}
	if c := s.b[start]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_') {
		return nil, false
	}
	i := start + 1
	for i < len(s.b) && isFlatNameByte(s.b[i]) {
		i++
	}
	s.pos = i
	return s.b[start:i], true
}

func isFlatNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '-' || c == '.'
}

// content reads an element's character data up to its end tag, leaving
// pos on the "</". The value is either a slice of the body or of buf,
// which content appends to and returns.
func (s *flatScanner) content(buf []byte) (val, _ []byte, ok bool) {
	var direct []byte // the value while it is one plain slice of the body
	inBuf := false    // the value is in buf
	segs := 0
	for {
		rest := s.b[s.pos:]
		if len(rest) == 0 {
			return nil, buf, false
		}
		var seg []byte
		var plain bool
		if rest[0] == '<' {
			if len(rest) > 1 && rest[1] == '/' {
				break
			}
			if !bytes.HasPrefix(rest, []byte("<![CDATA[")) {
				return nil, buf, false
			}
			body := rest[len("<![CDATA["):]
			end := bytes.Index(body, []byte("]]>"))
			if end < 0 {
				return nil, buf, false
			}
			seg = body[:end]
			var ok bool
			if plain, ok = scanChars(seg, false); !ok {
				return nil, buf, false
			}
			s.pos += len("<![CDATA[") + end + len("]]>")
		} else {
			end := bytes.IndexByte(rest, '<')
			if end < 0 {
				return nil, buf, false
			}
			seg = rest[:end]
			var ok bool
			if plain, ok = scanChars(seg, true); !ok {
				return nil, buf, false
			}
			s.pos += end
		}
		segs++
		if plain && segs == 1 {
			direct = seg
			continue
		}
		if !inBuf {
			buf = append(buf, direct...)
			inBuf = true
		}
		switch {
		case plain:
			buf = append(buf, seg...)
		case rest[0] == '<':
			buf = appendCRLF(buf, seg)
		default:
			var ok bool
			if buf, ok = appendText(buf, seg); !ok {
				return nil, buf, false
			}
		}
	}
	if inBuf {
		return buf, buf, true
	}
	return direct, buf, true
}

// scanChars checks the characters of a CDATA section, or with text of a
// run of text up to a '<'; plain means that it holds no '\r' (nor, in
// text, '&') and so is its own value. In text, "]]>" falls back, as does
// a '&' that does not start an entity appendText knows.
func scanChars(seg []byte, text bool) (plain, ok bool) {
	plain = true
	for i := 0; i < len(seg); {
		c := seg[i]
		if c >= 0x20 && c < utf8.RuneSelf {
			if text {
				switch c {
				case '&':
					plain = false
				case '>':
					if i >= 2 && seg[i-1] == ']' && seg[i-2] == ']' {
						return false, false
					}
				}
			}
			i++
			continue
		}
		switch c {
		case '\t', '\n':
			i++
		case '\r':
			plain = false
			i++
		default:
			n, ok := validRune(seg[i:])
			if !ok {
				return false, false
			}
			i += n
		}
	}
	return plain, true
}

// validRune reports the size of the character at the start of b if it is
// valid UTF-8 and in XML's Char production; b[0] is a control character
// or starts a multi-byte sequence. isXMLChar (xmlwrite.go) is
// encoding/xml's isInCharacterRange.
func validRune(b []byte) (int, bool) {
	r, n := utf8.DecodeRune(b)
	if r == utf8.RuneError && n == 1 || !isXMLChar(r) {
		return 0, false
	}
	return n, true
}

// appendCRLF appends seg with "\r\n" and lone "\r" turned into "\n".
func appendCRLF(dst, seg []byte) []byte {
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c == '\r' {
			dst = append(dst, '\n')
			if i+1 < len(seg) && seg[i+1] == '\n' {
				i++
			}
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

// appendText appends a run of text, already checked by scanChars, with its
// entities decoded and its line ends normalised. An entity outside the
// fast grammar reports !ok.
func appendText(dst, seg []byte) ([]byte, bool) {
	for i := 0; i < len(seg); {
		c := seg[i]
		switch c {
		case '\r':
			dst = append(dst, '\n')
			i++
			if i < len(seg) && seg[i] == '\n' {
				i++
			}
		case '&':
			var n int
			var ok bool
			if dst, n, ok = appendEntity(dst, seg[i:]); !ok {
				return dst, false
			}
			i += n
		default:
			dst = append(dst, c)
			i++
		}
	}
	return dst, true
}

// appendEntity decodes the entity or character reference at the start of
// b (b[0] is '&') and reports how many bytes it took.
func appendEntity(dst, b []byte) ([]byte, int, bool) {
	semi := bytes.IndexByte(b, ';')
	if semi < 0 {
		return dst, 0, false
	}
	ref := b[1:semi]
	switch string(ref) {
	case "lt":
		return append(dst, '<'), semi + 1, true
	case "gt":
		return append(dst, '>'), semi + 1, true
	case "amp":
		return append(dst, '&'), semi + 1, true
	case "apos":
		return append(dst, '\''), semi + 1, true
	case "quot":
		return append(dst, '"'), semi + 1, true
	}
	if len(ref) < 2 || ref[0] != '#' {
		return dst, 0, false
	}
	digits, base := ref[1:], rune(10)
	if digits[0] == 'x' {
		digits, base = digits[1:], 16
	}
	if len(digits) == 0 {
		return dst, 0, false
	}
	var r rune
	for _, c := range digits {
		var d rune
		switch {
		case '0' <= c && c <= '9':
			d = rune(c - '0')
		case base == 16 && 'a' <= c && c <= 'f':
			d = rune(c-'a') + 10
		case base == 16 && 'A' <= c && c <= 'F':
			d = rune(c-'A') + 10
		default:
			return dst, 0, false
		}
		r = r*base + d
		if r > utf8.MaxRune {
			return dst, 0, false
		}
	}
	// encoding/xml turns a surrogate into U+FFFD; leave that to it.
	if !isXMLChar(r) || 0xD800 <= r && r <= 0xDFFF {
		return dst, 0, false
	}
	return utf8.AppendRune(dst, r), semi + 1, true
}

// setFlat stores the value of the child element name as encoding/xml
// would. It reports false for the names of struct fields, which only the
// encoding/xml path fills, and for numbers encoding/xml would refuse.
func (m *Message) setFlat(name, val []byte) bool {
	switch string(name) {
	case "ToUserName":
		m.ToUserName = string(val)
	case "FromUserName":
		m.FromUserName = string(val)
	case "CreateTime":
		return flatInt64(&m.CreateTime, val)
	case "MsgType":
		m.MsgType = flatMsgType(val)
	case "MsgId":
		m.MsgId = string(val)
	case "MsgID":
		m.MsgID = string(val)
	case "Content":
		m.Content = string(val)
	case "bizmsgmenuid":
		m.BizMsgMenuID = string(val)
	case "PicUrl":
		m.PicUrl = string(val)
	case "MediaId":
		m.MediaId = string(val)
	case "Format":
		m.Format = string(val)
	case "Recognition":
		m.Recognition = string(val)
	case "ThumbMediaId":
		m.ThumbMediaId = string(val)
	case "Location_X":
		return flatFloat(&m.LocationX, val)
	case "Location_Y":
		return flatFloat(&m.LocationY, val)
	case "Scale":
		return flatFloat(&m.Scale, val)
	case "Label":
		m.Label = string(val)
	case "Title":
		m.Title = string(val)
	case "Description":
		m.Description = string(val)
	case "Url":
		m.Url = string(val)
	case "Event":
		m.Event = flatEvent(val)
	case "EventKey":
		m.EventKey = string(val)
	case "Ticket":
		m.Ticket = string(val)
	case "Latitude":
		return flatFloat(&m.Latitude, val)
	case "Longitude":
		return flatFloat(&m.Longitude, val)
	case "Precision":
		return flatFloat(&m.Precision, val)
	case "MenuId":
		m.MenuId = string(val)
	case "Status":
		m.Status = string(val)
	case "TotalCount":
		return flatInt(&m.TotalCount, val)
	case "FilterCount":
		return flatInt(&m.FilterCount, val)
	case "SentCount":
		return flatInt(&m.SentCount, val)
	case "ErrorCount":
		return flatInt(&m.ErrorCount, val)
	case "Encrypt":
		m.Encrypt = string(val)
	case "ScanCodeInfo", "SendPicsInfo", "SendLocationInfo",
		"SubscribeMsgPopupEvent", "SubscribeMsgChangeEvent", "SubscribeMsgSentEvent":
		return false
	default:
		m.Unknown = append(m.Unknown, UnknownElement{
			XMLName: xml.Name{Local: string(name)},
			Value:   string(val),
		})
	}
	return true
}

// flatInt64 converts as encoding/xml's copyValue does for an int64.
func flatInt64(dst *int64, val []byte) bool {
	if len(val) == 0 {
		*dst = 0
		return true
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(val)), 10, 64)
	if err != nil {
		return false
	}
	*dst = n
	return true
}

// flatInt converts as encoding/xml's copyValue does for an int.
func flatInt(dst *int, val []byte) bool {
	if len(val) == 0 {
		*dst = 0
		return true
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(val)), 10, strconv.IntSize)
	if err != nil {
		return false
	}
	*dst = int(n)
	return true
}

// flatFloat converts as encoding/xml's copyValue does for a float64.
func flatFloat(dst *float64, val []byte) bool {
	if len(val) == 0 {
		*dst = 0
		return true
	}
	f, err := strconv.ParseFloat(string(bytes.TrimSpace(val)), 64)
	if err != nil {
		return false
	}
	*dst = f
	return true
}

// flatMsgType is the MsgType value: one of the documented types as a
// constant when it is one after trimming (the string costs nothing then),
// else the value itself, trimmed later as every MsgType is.
func flatMsgType(val []byte) string {
	switch string(bytes.TrimSpace(val)) {
	case "text":
		return "text"
	case "event":
		return "event"
	case "image":
		return "image"
	case "voice":
		return "voice"
	case "video":
		return "video"
	case "shortvideo":
		return "shortvideo"
	case "location":
		return "location"
	case "link":
		return "link"
	}
	return string(val)
}

// flatEvent is flatMsgType for the Event value.
func flatEvent(val []byte) string {
	switch string(bytes.TrimSpace(val)) {
	case "subscribe":
		return "subscribe"
	case "unsubscribe":
		return "unsubscribe"
	case "SCAN":
		return "SCAN"
	case "LOCATION":
		return "LOCATION"
	case "CLICK":
		return "CLICK"
	case "VIEW":
		return "VIEW"
	case "view_miniprogram":
		return "view_miniprogram"
	case "scancode_push":
		return "scancode_push"
	case "scancode_waitmsg":
		return "scancode_waitmsg"
	case "pic_sysphoto":
		return "pic_sysphoto"
	case "pic_photo_or_album":
		return "pic_photo_or_album"
	case "pic_weixin":
		return "pic_weixin"
	case "location_select":
		return "location_select"
	case "TEMPLATESENDJOBFINISH":
		return "TEMPLATESENDJOBFINISH"
	case "MASSSENDJOBFINISH":
		return "MASSSENDJOBFINISH"
	}
	return string(val)
}
