package rules

import (
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// field is a match key compared for equality. Each has one subject in the
// inbound message (see input.subject); the index and the full check both
// go through it, which is what keeps them in agreement.
type field uint8

const (
	fieldEquals   field = iota // text.equals: the normalized text
	fieldMenuID                // menu_id: bizmsgmenuid of a msgmenu click
	fieldEventKey              // event_key: EventKey of an event
	fieldScene                 // scene: the QR scene of subscribe or SCAN
	fieldFrom                  // from: the sender's openid
	fieldStatus                // status: Status of TEMPLATESENDJOBFINISH (and MASSSENDJOBFINISH)
	fieldEvent                 // event: the event name, case-insensitive
	fieldMsgType               // msgtype, case-insensitive
	fieldState                 // state: the sender's conversation state, read from the store (state.go)
	numFields
)

// fieldNames are the keys of rules.yaml, for messages.
var fieldNames = [numFields]string{"text.equals", "menu_id", "event_key", "scene", "from", "status", "event", "msgtype", "state"}

// input is an inbound message prepared for matching: everything that is
// folded or extracted is done once here, not once per rule.
type input struct {
	msg      *wechat.Message
	subjects [numFields]string
	has      [numFields]bool
	isEvent  bool
	hasText  bool
	text     string    // normalized: what equals, contains and prefix compare
	wide     string    // trimmed and width-folded: what regexes see
	now      time.Time // the Set's clock in its time zone, for time:; zero: not checked
}

func newInput(m *wechat.Message) input {
	in := input{msg: m}
	in.isEvent = m.IsEvent()
	in.set(fieldMsgType, strings.ToLower(m.MsgType))
	in.set(fieldFrom, m.FromUserName)
	in.set(fieldMenuID, m.BizMsgMenuID)
	in.set(fieldStatus, foldStatus(m.Status))
	if in.isEvent {
		event := strings.ToLower(m.Event)
		in.set(fieldEvent, event)
		in.set(fieldEventKey, m.EventKey)
		in.set(fieldScene, m.Scene())
	}
	raw := ""
	switch in.subjects[fieldMsgType] {
	case "text":
		raw, in.hasText = m.Content, true
	case "voice":
		// Recognition is present only with speech recognition on.
		raw, in.hasText = m.Recognition, m.Recognition != ""
	}
	if in.hasText {
		in.wide = widen(raw)
		in.text = foldCase(in.wide)
		in.set(fieldEquals, in.text)
	}
	return in
}

// set records a subject; an empty one is absent, since no rule may match
// on an empty value.
func (in *input) set(f field, v string) {
	if v != "" {
		in.subjects[f], in.has[f] = v, true
	}
}

// foldStatus is the form in which status values are compared. WeChat
// writes "failed:user block" but "failed: system failed", so whether a
// space follows the colon must not count, nor case, nor runs of spaces:
// a rule may write either failure either way.
func foldStatus(s string) string {
	s = strings.Join(strings.Fields(strings.ToLower(s)), " ")
	return strings.ReplaceAll(strings.ReplaceAll(s, ": ", ":"), " :", ":")
}

// condition is a compiled match: all given keys must hold, and within a
// key any of its values.
type condition struct {
	values   [numFields][]string // normalized the way input.subject is
	contains []string            // normalized
	prefix   []string            // normalized
	regexes  []*regexp.Regexp    // case-insensitive, run on input.wide
	literals []string            // per regex: a normalized string every match contains, or ""
	when     *timeWindow         // time: weekdays and hours; nil: any time
}

// holds reports whether every key of c holds for in, except the anchor,
// which the index has already established when skip says so.
func (c *condition) holds(in *input, skip anchor) bool {
	if c.when != nil && !c.when.holds(in.now) {
		return false
	}
	for f := range numFields {
		vals := c.values[f]
		if len(vals) == 0 || (skip.kind == anchorField && skip.field == f) {
			continue
		}
		if !in.has[f] || !slices.Contains(vals, in.subjects[f]) {
			return false
		}
	}
	if len(c.prefix) > 0 && skip.kind != anchorPrefix {
		if !in.hasText || !slices.ContainsFunc(c.prefix, func(p string) bool { return strings.HasPrefix(in.text, p) }) {
			return false
		}
	}
	if len(c.contains) > 0 && skip.kind != anchorContains {
		if !in.hasText || !slices.ContainsFunc(c.contains, func(p string) bool { return strings.Contains(in.text, p) }) {
			return false
		}
	}
	if len(c.regexes) > 0 {
		// A regex's literal only narrows the candidates: the regex itself
		// always runs.
		if !in.hasText || !slices.ContainsFunc(c.regexes, func(re *regexp.Regexp) bool { return re.MatchString(in.wide) }) {
			return false
		}
	}
	return true
}

// groups returns the submatches of the first regex that matches, nil when
// none does (or there is none).
func (c *condition) groups(in *input) []string {
	for _, re := range c.regexes {
		if m := re.FindStringSubmatch(in.wide); m != nil {
			return m
		}
	}
	return nil
}
