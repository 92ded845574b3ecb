package wechat

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// Errors of EncodeReply; test with errors.Is.
var (
	// ErrNotPassive: the message type cannot be a passive reply; WeChat
	// takes only text, image, voice, video, music and news in the HTTP
	// response. Send it through the customer-service API instead.
	ErrNotPassive = errors.New("wechat: message type cannot be a passive reply")
	// ErrInvalidReply: the message lacks what its passive reply needs
	// (its payload, a media_id, an article).
	ErrInvalidReply = errors.New("wechat: invalid passive reply")
)

// maxPassiveArticles is WeChat's limit for a news passive reply; it shows
// only the first when answering a user message.
const maxPassiveArticles = 8

// EncodeReply writes m as a passive reply: the XML answered in the HTTP
// response to a callback, from the account (fromUser, the gh_ id) to the
// user (toUser, the openid). m.MsgType may be empty when exactly one
// payload is set, as in reply items loaded from rules.yaml. Media must
// already be uploaded: File is not read here.
func EncodeReply(toUser, fromUser string, createTime int64, m *CustomMessage) ([]byte, error) {
	msgType, err := replyType(m)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString("<xml>")
	element(&b, "ToUserName", toUser)
	element(&b, "FromUserName", fromUser)
	b.WriteString("<CreateTime>")
	b.WriteString(strconv.FormatInt(createTime, 10))
	b.WriteString("</CreateTime>")
	element(&b, "MsgType", msgType)

	switch msgType {
	case MsgTypeText:
		element(&b, "Content", m.Text.Content)
	case MsgTypeImage:
		err = mediaReply(&b, "Image", m.Image)
	case MsgTypeVoice:
		err = mediaReply(&b, "Voice", m.Voice)
	case MsgTypeVideo:
		err = videoReply(&b, m.Video)
	case MsgTypeMusic:
		err = musicReply(&b, m.Music)
	case MsgTypeNews:
		err = newsReply(&b, m.News)
	}
	if err != nil {
		return nil, err
	}
	b.WriteString("</xml>")
	return b.Bytes(), nil
}

// replyType returns the passive type of m: its MsgType, or the type of its
// only payload when MsgType is empty, checking that payload is present.
func replyType(m *CustomMessage) (string, error) {
	if m == nil {
		return "", fmt.Errorf("%w: no message", ErrInvalidReply)
	}
	slots := m.slots()
	msgType := m.MsgType
	if msgType == "" {
		for _, p := range slots {
			if !p.set {
				continue
			}
			if msgType != "" {
				return "", fmt.Errorf("%w: no msgtype and both %s and %s are set", ErrInvalidReply, msgType, p.msgType)
			}
			msgType = p.msgType
		}
		if msgType == "" {
			return "", fmt.Errorf("%w: no msgtype and no payload", ErrInvalidReply)
		}
	}
	// The passive types are the ones slots (validate.go) marks so, which
	// is also what IsPassiveType answers.
	for _, p := range slots {
		if p.msgType != msgType {
			continue
		}
		if !p.passive {
			return "", fmt.Errorf("%w: %s", ErrNotPassive, msgType)
		}
		if !p.set {
			return "", fmt.Errorf("%w: msgtype %s without its %s payload", ErrInvalidReply, msgType, msgType)
		}
		return msgType, nil
	}
	return "", fmt.Errorf("%w: %s", ErrNotPassive, strconv.Quote(msgType))
}

func mediaReply(b *bytes.Buffer, tag string, m *Media) error {
	if m.MediaID == "" {
		return fmt.Errorf("%w: %s reply without media_id (upload the file first)", ErrInvalidReply, tag)
	}
	b.WriteString("<" + tag + ">")
	element(b, "MediaId", m.MediaID)
	b.WriteString("</" + tag + ">")
	return nil
}

func videoReply(b *bytes.Buffer, v *Video) error {
	if v.MediaID == "" {
		return fmt.Errorf("%w: video reply without media_id (upload the file first)", ErrInvalidReply)
	}
	b.WriteString("<Video>")
	element(b, "MediaId", v.MediaID)
	element(b, "Title", v.Title)
	element(b, "Description", v.Description)
	b.WriteString("</Video>")
	return nil
}

func musicReply(b *bytes.Buffer, m *Music) error {
	// WeChat's passive music reply requires the thumbnail.
	if m.ThumbMediaID == "" {
		return fmt.Errorf("%w: music reply without thumb_media_id (upload the thumbnail first)", ErrInvalidReply)
	}
	b.WriteString("<Music>")
	element(b, "Title", m.Title)
	element(b, "Description", m.Description)
	element(b, "MusicUrl", m.MusicURL)
	element(b, "HQMusicUrl", m.HQMusicURL)
	element(b, "ThumbMediaId", m.ThumbMediaID)
	b.WriteString("</Music>")
	return nil
}

func newsReply(b *bytes.Buffer, n *News) error {
	if len(n.Articles) == 0 || len(n.Articles) > maxPassiveArticles {
		return fmt.Errorf("%w: news reply with %d articles, want 1 to %d", ErrInvalidReply, len(n.Articles), maxPassiveArticles)
	}
	b.WriteString("<ArticleCount>")
	b.WriteString(strconv.Itoa(len(n.Articles)))
	b.WriteString("</ArticleCount><Articles>")
	for _, a := range n.Articles {
		b.WriteString("<item>")
		element(b, "Title", a.Title)
		element(b, "Description", a.Description)
		element(b, "PicUrl", a.PicURL)
		element(b, "Url", a.URL)
		b.WriteString("</item>")
	}
	b.WriteString("</Articles>")
	return nil
}

// element writes <tag><![CDATA[value]]></tag>.
func element(b *bytes.Buffer, tag, value string) {
	b.WriteString("<" + tag + ">")
	writeCDATA(b, value)
	b.WriteString("</" + tag + ">")
}

// MsgTypeTransferCustomerService is the passive reply that hands the
// user's message to the account's human customer-service agents.
const MsgTypeTransferCustomerService = "transfer_customer_service"

// TransferCustomerService is the hand-over to human agents: passive only,
// there is no customer-service API message for it. KfAccount, when set,
// names the agent ("name@account") to hand to.
type TransferCustomerService struct {
	KfAccount string `json:"kf_account,omitempty" yaml:"kf_account"`
}

// EncodeTransfer writes the passive reply that hands the conversation to
// human agents, from the account (fromUser) about the user (toUser):
// <MsgType>transfer_customer_service</MsgType>, with
// <TransInfo><KfAccount> when t names an agent.
func EncodeTransfer(toUser, fromUser string, createTime int64, t TransferCustomerService) []byte {
	var b bytes.Buffer
	b.WriteString("<xml>")
	element(&b, "ToUserName", toUser)
	element(&b, "FromUserName", fromUser)
	b.WriteString("<CreateTime>")
	b.WriteString(strconv.FormatInt(createTime, 10))
	b.WriteString("</CreateTime>")
	element(&b, "MsgType", MsgTypeTransferCustomerService)
	if t.KfAccount != "" {
		b.WriteString("<TransInfo>")
		element(&b, "KfAccount", t.KfAccount)
		b.WriteString("</TransInfo>")
	}
	b.WriteString("</xml>")
	return b.Bytes()
}
