package wechat

import (
	"fmt"
	"strconv"
	"strings"
)

// FieldProblem is one thing wrong with an outbound message, found before
// it is sent. Path names the field the way the JSON (and rules.yaml) spells
// it, e.g. "text.content", "news.articles", "msgmenu.list[1].id", so that
// the rule loader can point at the line and the push API can name the field.
type FieldProblem struct {
	Path string
	Msg  string
}

func (p FieldProblem) String() string {
	if p.Path == "" {
		return p.Msg
	}
	return p.Path + ": " + p.Msg
}

// CustomMsgTypes lists the customer-service message types, in the order
// WeChat's documentation gives them.
var CustomMsgTypes = []string{
	MsgTypeText, MsgTypeImage, MsgTypeVoice, MsgTypeVideo, MsgTypeMusic,
	MsgTypeNews, MsgTypeMPNews, MsgTypeMPNewsArticle, MsgTypeMsgMenu,
	MsgTypeWxCard, MsgTypeMiniProgramPage,
}

// payloadSlot is one payload pointer of a CustomMessage with its msgtype.
type payloadSlot struct {
	msgType string
	// passive: WeChat takes this type as a passive reply, in the HTTP
	// response to a callback.
	passive bool
	set     bool
	value   any
}

// slots lists the payloads of m in CustomMsgTypes order. It is the one
// place that pairs a msgtype with its field and says whether it can be a
// passive reply, so adding a type means adding a line here.
func (m *CustomMessage) slots() [11]payloadSlot {
	return [...]payloadSlot{
		{MsgTypeText, true, m.Text != nil, m.Text},
		{MsgTypeImage, true, m.Image != nil, m.Image},
		{MsgTypeVoice, true, m.Voice != nil, m.Voice},
		{MsgTypeVideo, true, m.Video != nil, m.Video},
		{MsgTypeMusic, true, m.Music != nil, m.Music},
		{MsgTypeNews, true, m.News != nil, m.News},
		{MsgTypeMPNews, false, m.MPNews != nil, m.MPNews},
		{MsgTypeMPNewsArticle, false, m.MPNewsArticle != nil, m.MPNewsArticle},
		{MsgTypeMsgMenu, false, m.MsgMenu != nil, m.MsgMenu},
		{MsgTypeWxCard, false, m.WxCard != nil, m.WxCard},
		{MsgTypeMiniProgramPage, false, m.MiniProgramPage != nil, m.MiniProgramPage},
	}
}

// Payload returns the payload named by MsgType (*Text, *Media, *Video,
// *Music, *News, *MPNewsArticle, *MsgMenu, *WxCard or *MiniProgramPage),
// or nil when MsgType is unknown or its payload is not set.
func (m *CustomMessage) Payload() any {
	for _, s := range m.slots() {
		if s.msgType == m.MsgType && s.set {
			return s.value
		}
	}
	return nil
}

// IsPassiveType reports whether msgType can be answered as a passive reply
// in the HTTP response: WeChat takes only text, image, voice, video, music
// and news there. EncodeReply refuses the others with ErrNotPassive.
func IsPassiveType(msgType string) bool {
	var none CustomMessage
	for _, s := range none.slots() {
		if s.msgType == msgType {
			return s.passive
		}
	}
	return false
}

// Validate checks m against what message/custom/send accepts (see
// PROTOCOL.md): a known msgtype, exactly its payload, the payload's required
// fields, one news article (WeChat answers 45008 to more), unique msgmenu
// ids. A media object may name a local file instead of a media_id (the
// sender uploads it). The recipient is not checked here: rule reply items
// have none until a message arrives; see ValidateRecipient.
func (m *CustomMessage) Validate() []FieldProblem {
	var v validator
	known := false
	for _, s := range m.slots() {
		if s.msgType == m.MsgType {
			known = true
			if !s.set {
				v.add(s.msgType, "required for msgtype %s", s.msgType)
			}
		} else if s.set {
			v.add(s.msgType, "set, but msgtype is %q: a message carries exactly one payload", m.MsgType)
		}
	}
	if !known {
		if m.MsgType == "" {
			v.add("msgtype", "required")
		} else {
			v.add("msgtype", "unknown message type %q; want one of %s", m.MsgType, strings.Join(CustomMsgTypes, ", "))
		}
	}

	if t := m.Text; t != nil {
		v.required("text.content", t.Content)
	}
	v.media("image", m.Image)
	v.media("voice", m.Voice)
	if p := m.MPNews; p != nil {
		// mpnews names a published news item; there is no file to upload.
		if p.File != "" {
			v.add("mpnews.file", "mpnews takes the media_id of a published news item, not a file")
		}
		v.required("mpnews.media_id", p.MediaID)
	}
	if p := m.Video; p != nil {
		v.mediaOrFile("video", "media_id", p.MediaID, "file", p.File)
		v.notBoth("video", "thumb_media_id", p.ThumbMediaID, "thumb_file", p.ThumbFile)
	}
	if p := m.Music; p != nil {
		v.required("music.musicurl", p.MusicURL)
		v.required("music.hqmusicurl", p.HQMusicURL)
		v.mediaOrFile("music", "thumb_media_id", p.ThumbMediaID, "thumb_file", p.ThumbFile)
	}
	if p := m.News; p != nil {
		switch len(p.Articles) {
		case 0:
			v.add("news.articles", "required: one article")
		case 1:
			v.required("news.articles[0].title", p.Articles[0].Title)
		default:
			v.add("news.articles", "has %d articles; WeChat takes exactly one (it answers 45008 to more)", len(p.Articles))
		}
	}
	if p := m.MPNewsArticle; p != nil {
		v.required("mpnewsarticle.article_id", p.ArticleID)
	}
	if p := m.MsgMenu; p != nil {
		v.msgMenu(p)
	}
	if p := m.WxCard; p != nil {
		v.required("wxcard.card_id", p.CardID)
	}
	if p := m.MiniProgramPage; p != nil {
		v.required("miniprogrampage.title", p.Title)
		v.required("miniprogrampage.appid", p.AppID)
		v.required("miniprogrampage.pagepath", p.PagePath)
		v.mediaOrFile("miniprogrampage", "thumb_media_id", p.ThumbMediaID, "thumb_file", p.ThumbFile)
	}
	return v.problems
}

// ValidateRecipient checks what Validate leaves out: the recipient.
func (m *CustomMessage) ValidateRecipient() []FieldProblem {
	if m.ToUser == "" {
		return []FieldProblem{{Path: "touser", Msg: "required"}}
	}
	return nil
}

// Validate checks t against what message/template/send needs: a
// template_id, at least one data keyword, and an appid when a mini-program
// is given. The recipient is checked by ValidateRecipient.
func (t *TemplateMessage) Validate() []FieldProblem {
	var v validator
	v.required("template_id", t.TemplateID)
	if len(t.Data) == 0 {
		v.add("data", "required: at least one keyword")
	}
	for key := range t.Data {
		if strings.TrimSpace(key) == "" {
			v.add("data", "keyword names must not be empty")
		}
	}
	if t.MiniProgram != nil {
		v.required("miniprogram.appid", t.MiniProgram.AppID)
	}
	return v.problems
}

// ValidateRecipient checks the template message's recipient.
func (t *TemplateMessage) ValidateRecipient() []FieldProblem {
	if t.ToUser == "" {
		return []FieldProblem{{Path: "touser", Msg: "required"}}
	}
	return nil
}

// validator collects FieldProblems.
type validator struct{ problems []FieldProblem }

func (v *validator) add(path, format string, args ...any) {
	v.problems = append(v.problems, FieldProblem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) required(path, value string) {
	if strings.TrimSpace(value) == "" {
		v.add(path, "required")
	}
}

func (v *validator) media(name string, m *Media) {
	if m != nil {
		v.mediaOrFile(name, "media_id", m.MediaID, "file", m.File)
	}
}

// mediaOrFile requires exactly one of an uploaded media_id and a local file.
func (v *validator) mediaOrFile(payload, idKey, id, fileKey, file string) {
	if id == "" && file == "" {
		v.add(payload+"."+idKey, "required (or %s: a local file to upload)", fileKey)
		return
	}
	v.notBoth(payload, idKey, id, fileKey, file)
}

func (v *validator) notBoth(payload, idKey, id, fileKey, file string) {
	if id != "" && file != "" {
		v.add(payload+"."+fileKey, "give %s or %s, not both", idKey, fileKey)
	}
}

func (v *validator) msgMenu(p *MsgMenu) {
	if len(p.List) == 0 {
		v.add("msgmenu.list", "required: at least one item")
	}
	seen := make(map[string]int, len(p.List))
	for i, item := range p.List {
		at := "msgmenu.list[" + strconv.Itoa(i) + "]"
		v.required(at+".content", item.Content)
		if strings.TrimSpace(item.ID) == "" {
			v.add(at+".id", "required")
			continue
		}
		if first, dup := seen[item.ID]; dup {
			v.add(at+".id", "duplicate id %q (also list[%d]): a click could not tell them apart", item.ID, first)
			continue
		}
		seen[item.ID] = i
	}
}
