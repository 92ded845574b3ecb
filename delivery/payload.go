package delivery

import (
	"encoding/json"
	"fmt"

	"github.com/wxreply/wxreply/wechat"
)

// payload is an Outgoing as the outbox keeps it. The JSON of the message
// types is what WeChat takes, which leaves out the local files rules.yaml
// may name instead of a media_id (the API must never see them, and the
// push API must never accept them); they travel beside it.
type payload struct {
	Custom   *wechat.CustomMessage   `json:"custom,omitempty"`
	Template *wechat.TemplateMessage `json:"template,omitempty"`
	Files    *files                  `json:"files,omitempty"`
}

// files are the File and ThumbFile fields of a customer-service message.
type files struct {
	Media string `json:"media,omitempty"` // image, voice, mpnews, video: File
	Thumb string `json:"thumb,omitempty"` // video, music, miniprogrampage: ThumbFile
}

func encodePayload(o wechat.Outgoing) ([]byte, error) {
	p := payload{Custom: o.Custom, Template: o.Template}
	if m := o.Custom; m != nil {
		f := files{}
		switch {
		case m.Image != nil:
			f.Media = m.Image.File
		case m.Voice != nil:
			f.Media = m.Voice.File
		case m.MPNews != nil:
			f.Media = m.MPNews.File
		case m.Video != nil:
			f.Media, f.Thumb = m.Video.File, m.Video.ThumbFile
		case m.Music != nil:
			f.Thumb = m.Music.ThumbFile
		case m.MiniProgramPage != nil:
			f.Thumb = m.MiniProgramPage.ThumbFile
		}
		if f != (files{}) {
			p.Files = &f
		}
	}
	return json.Marshal(p)
}

func decodePayload(b []byte) (wechat.Outgoing, error) {
	var p payload
	if err := json.Unmarshal(b, &p); err != nil {
		return wechat.Outgoing{}, fmt.Errorf("outbox item does not decode: %w", err)
	}
	if m, f := p.Custom, p.Files; m != nil && f != nil {
		switch {
		case m.Image != nil:
			m.Image.File = f.Media
		case m.Voice != nil:
			m.Voice.File = f.Media
		case m.MPNews != nil:
			m.MPNews.File = f.Media
		case m.Video != nil:
			m.Video.File, m.Video.ThumbFile = f.Media, f.Thumb
		case m.Music != nil:
			m.Music.ThumbFile = f.Thumb
		case m.MiniProgramPage != nil:
			m.MiniProgramPage.ThumbFile = f.Thumb
		}
	}
	return wechat.Outgoing{Custom: p.Custom, Template: p.Template}, nil
}
