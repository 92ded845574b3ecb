package tools

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// The sandbox user's side: the lines the person types, the callback XML
// WeChat would post for them, and the inbox of what the fake API received.

// maxLine bounds one line of input: far beyond what the server takes (a
// callback over 64 KiB is a 413), so that a pasted file costs no more.
const maxLine = 1 << 20

// readLine reads one line without its end, keeping at most maxLine bytes
// of it; size is the whole line's. A last line without a newline counts;
// err is io.EOF only when there is no line left.
func readLine(r *bufio.Reader) (line string, size int, err error) {
	var b []byte
	for {
		chunk, err := r.ReadSlice('\n')
		size += len(chunk)
		if len(b) < maxLine {
			b = append(b, chunk[:min(len(chunk), maxLine-len(b))]...)
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && size > 0:
			return string(b), size, nil
		case err != nil:
			return "", 0, err
		}
		size-- // the newline
		return strings.TrimSuffix(string(b), "\n"), size, nil
	}
}

// createTime is now, but always after the previous callback's: the
// server drops a second event from one user with the same CreateTime,
// event and key as a WeChat retry, and a person (or a test) can easily
// send two in one second.
func (s *session) createTime() int64 {
	t := max(time.Now().Unix(), s.lastCreate+1)
	s.lastCreate = t
	return t
}

// textXML is a text message; menuID makes it a msgmenu click.
func (s *session) textXML(content, menuID string) []byte {
	x := s.header(wechat.MsgTypeText)
	x.cdata("Content", content)
	if menuID != "" {
		x.cdata("bizmsgmenuid", menuID)
	}
	return x.msgID(s)
}

// voiceXML is a voice message with speech recognition on.
func (s *session) voiceXML(recognition string) []byte {
	x := s.header(wechat.MsgTypeVoice)
	x.cdata("MediaId", "sandbox_voice_"+strconv.FormatInt(s.nextID, 10))
	x.cdata("Format", "amr")
	x.cdata("Recognition", recognition)
	return x.msgID(s)
}

// eventXML is an event; key and ticket are left out when empty.
func (s *session) eventXML(event, key, ticket string) []byte {
	x := s.header(wechat.MsgTypeEvent)
	x.cdata("Event", event)
	if key != "" {
		x.cdata("EventKey", key)
	}
	if ticket != "" {
		x.cdata("Ticket", ticket)
	}
	return x.done()
}

func (s *session) header(msgType string) *xmlBuilder {
	x := &xmlBuilder{}
	x.b.WriteString("<xml>")
	x.cdata("ToUserName", sandboxGhID)
	x.cdata("FromUserName", s.openid)
	x.number("CreateTime", s.createTime())
	x.cdata("MsgType", msgType)
	return x
}

// xmlBuilder writes callback XML the way WeChat does: CDATA for strings.
type xmlBuilder struct{ b bytes.Buffer }

func (x *xmlBuilder) cdata(name, value string) {
	x.b.WriteString("<" + name + "><![CDATA[")
	// "]]>" would end the section: split it across two sections.
	x.b.WriteString(strings.ReplaceAll(value, "]]>", "]]]]><![CDATA[>"))
	x.b.WriteString("]]></" + name + ">")
}

func (x *xmlBuilder) number(name string, v int64) {
	x.b.WriteString("<" + name + ">" + strconv.FormatInt(v, 10) + "</" + name + ">")
}

func (x *xmlBuilder) msgID(s *session) []byte {
	x.number("MsgId", s.nextID)
	s.nextID++
	return x.done()
}

func (x *xmlBuilder) done() []byte {
	x.b.WriteString("</xml>")
	return x.b.Bytes()
}

// inbox collects what the fake API receives, in order. The fake calls add
// from its handlers, which must not block.
type inbox struct {
	mu    sync.Mutex
	items []wechattest.Received
}

func newInbox() *inbox { return &inbox{} }

func (b *inbox) add(r wechattest.Received) {
	b.mu.Lock()
	b.items = append(b.items, r)
	b.mu.Unlock()
}

// take returns the oldest item, if there is one.
func (b *inbox) take() (wechattest.Received, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.items) == 0 {
		return wechattest.Received{}, false
	}
	r := b.items[0]
	b.items = b.items[1:]
	return r, true
}
