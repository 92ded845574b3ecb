package wechat

import (
	"slices"
	"strconv"
	"strings"
)

// Inbound message types beyond the customer-service ones of outbound.go.
const (
	MsgTypeShortVideo = "shortvideo"
	MsgTypeLocation   = "location"
	MsgTypeLink       = "link"
	MsgTypeEvent      = "event"
)

// Event names as WeChat spells them. WeChat has changed the case of some
// over the years, so compare with strings.EqualFold.
const (
	EventSubscribe             = "subscribe"
	EventUnsubscribe           = "unsubscribe"
	EventScan                  = "SCAN"
	EventLocation              = "LOCATION"
	EventClick                 = "CLICK"
	EventView                  = "VIEW"
	EventScancodePush          = "scancode_push"
	EventScancodeWaitMsg       = "scancode_waitmsg"
	EventPicSysPhoto           = "pic_sysphoto"
	EventPicPhotoOrAlbum       = "pic_photo_or_album"
	EventPicWeixin             = "pic_weixin"
	EventLocationSelect        = "location_select"
	EventViewMiniProgram       = "view_miniprogram"
	EventTemplateSendJobFinish = "TEMPLATESENDJOBFINISH"
	EventMassSendJobFinish     = "MASSSENDJOBFINISH"
	EventSubscribeMsgPopup     = "subscribe_msg_popup_event"
	EventSubscribeMsgChange    = "subscribe_msg_change_event"
	EventSubscribeMsgSent      = "subscribe_msg_sent_event"
)

// qrScenePrefix marks the EventKey of a follow through a parametric QR code.
const qrScenePrefix = "qrscene_"

// IsEvent reports whether m is an event rather than a user message.
func (m *Message) IsEvent() bool {
	return strings.EqualFold(m.MsgType, MsgTypeEvent)
}

// EventName returns the event as WeChat spelled it, or "" for a user
// message. Compare it with strings.EqualFold.
func (m *Message) EventName() string {
	if !m.IsEvent() {
		return ""
	}
	return m.Event
}

// isEvent reports whether m is the event named name, in any case.
func (m *Message) isEvent(name string) bool {
	return m.IsEvent() && strings.EqualFold(m.Event, name)
}

// DedupeKey identifies m across WeChat's retries, which repeat a callback
// byte for byte: "msg:<MsgId>" for user messages; for events, which have
// no MsgId, "evt:<FromUserName>:<CreateTime>:<Event>", followed by
// ":<MsgID>" when the event carries one (TEMPLATESENDJOBFINISH,
// MASSSENDJOBFINISH) and by ":<EventKey>" when it has one, so that two
// different menu clicks in the same second are not taken for a retry.
func (m *Message) DedupeKey() string {
	ct := strconv.FormatInt(m.CreateTime, 10)
	if !m.IsEvent() {
		if m.MsgId != "" {
			return "msg:" + m.MsgId
		}
		// Not seen from WeChat, but a message without MsgId must still
		// get a key that retries share and other messages do not.
		return "msg:" + m.FromUserName + ":" + ct + ":" + m.MsgType
	}
	var b strings.Builder
	b.Grow(len(m.FromUserName) + len(ct) + len(m.Event) + len(m.MsgID) + len(m.EventKey) + 8)
	b.WriteString("evt:")
	b.WriteString(m.FromUserName)
	b.WriteByte(':')
	b.WriteString(ct)
	b.WriteByte(':')
	b.WriteString(m.Event)
	if m.MsgID != "" {
		b.WriteByte(':')
		b.WriteString(m.MsgID)
	}
	if m.EventKey != "" {
		b.WriteByte(':')
		b.WriteString(m.EventKey)
	}
	return b.String()
}

// Scene returns the parametric QR code's scene value: the EventKey without
// its "qrscene_" prefix for a subscribe through a QR code, the EventKey of
// SCAN, and "" for everything else.
func (m *Message) Scene() string {
	switch {
	case m.isEvent(EventSubscribe):
		if scene, ok := strings.CutPrefix(m.EventKey, qrScenePrefix); ok {
			return scene
		}
	case m.isEvent(EventScan):
		return m.EventKey
	}
	return ""
}

// OpensWindow reports whether m opens (or renews) the 48-hour window in
// which the account may send customer-service messages to the user: any
// user message, a follow, a QR scan and the menu clicks WeChat counts
// (CLICK, scancode_push, scancode_waitmsg).
func (m *Message) OpensWindow() bool {
	if !m.IsEvent() {
		switch strings.ToLower(m.MsgType) {
		case MsgTypeText, MsgTypeImage, MsgTypeVoice, MsgTypeVideo,
			MsgTypeShortVideo, MsgTypeLocation, MsgTypeLink:
			return true
		}
		return false
	}
	for _, name := range []string{EventSubscribe, EventScan, EventClick, EventScancodePush, EventScancodeWaitMsg} {
		if strings.EqualFold(m.Event, name) {
			return true
		}
	}
	return false
}

// UnknownTags returns the names of the top-level tags Message does not
// model, each once, in the order they first appear: worth a log line, as a
// hint that WeChat added something.
func (m *Message) UnknownTags() []string {
	if len(m.Unknown) == 0 {
		return nil
	}
	tags := make([]string, 0, len(m.Unknown))
	for _, u := range m.Unknown {
		if !slices.Contains(tags, u.XMLName.Local) {
			tags = append(tags, u.XMLName.Local)
		}
	}
	return tags
}
