package wechat

import (
	"errors"
	"slices"
	"testing"
)

func TestCustomMessageValidate(t *testing.T) {
	menu := func(ids ...string) *MsgMenu {
		m := &MsgMenu{}
		for _, id := range ids {
			m.List = append(m.List, MsgMenuItem{ID: id, Content: "c" + id})
		}
		return m
	}
	tests := []struct {
		name string
		msg  CustomMessage
		want []string // the paths of the problems, in order
	}{
		{"text", CustomMessage{MsgType: MsgTypeText, Text: &Text{Content: "hi"}}, nil},
		{"text without content", CustomMessage{MsgType: MsgTypeText, Text: &Text{Content: "  "}}, []string{"text.content"}},
		{"no msgtype", CustomMessage{Text: &Text{Content: "hi"}}, []string{"text", "msgtype"}},
		{"unknown msgtype", CustomMessage{MsgType: "sticker"}, []string{"msgtype"}},
		{"msgtype without its payload", CustomMessage{MsgType: MsgTypeImage}, []string{"image"}},
		{"two payloads", CustomMessage{MsgType: MsgTypeText, Text: &Text{Content: "a"}, Image: &Media{MediaID: "m"}}, []string{"image"}},
		{"image by media_id", CustomMessage{MsgType: MsgTypeImage, Image: &Media{MediaID: "m"}}, nil},
		{"image by file", CustomMessage{MsgType: MsgTypeImage, Image: &Media{File: "/a.png"}}, nil},
		{"image with neither", CustomMessage{MsgType: MsgTypeImage, Image: &Media{}}, []string{"image.media_id"}},
		{"voice with both", CustomMessage{MsgType: MsgTypeVoice, Voice: &Media{MediaID: "m", File: "/a.amr"}}, []string{"voice.file"}},
		{"mpnews", CustomMessage{MsgType: MsgTypeMPNews, MPNews: &Media{MediaID: "m"}}, nil},
		{"mpnews by file", CustomMessage{MsgType: MsgTypeMPNews, MPNews: &Media{File: "/a"}}, []string{"mpnews.file", "mpnews.media_id"}},
		{"video", CustomMessage{MsgType: MsgTypeVideo, Video: &Video{File: "/v.mp4", ThumbFile: "/t.jpg"}}, nil},
		{"video thumb twice", CustomMessage{MsgType: MsgTypeVideo, Video: &Video{MediaID: "m", ThumbMediaID: "t", ThumbFile: "/t.jpg"}}, []string{"video.thumb_file"}},
		{"music", CustomMessage{MsgType: MsgTypeMusic, Music: &Music{MusicURL: "u", HQMusicURL: "h", ThumbMediaID: "t"}}, nil},
		{"music without urls and thumb", CustomMessage{MsgType: MsgTypeMusic, Music: &Music{Title: "t"}}, []string{"music.musicurl", "music.hqmusicurl", "music.thumb_media_id"}},
		{"news", CustomMessage{MsgType: MsgTypeNews, News: &News{Articles: []Article{{Title: "t"}}}}, nil},
		{"news without articles", CustomMessage{MsgType: MsgTypeNews, News: &News{}}, []string{"news.articles"}},
		{"news with two articles (45008)", CustomMessage{MsgType: MsgTypeNews, News: &News{Articles: []Article{{Title: "a"}, {Title: "b"}}}}, []string{"news.articles"}},
		{"news article without title", CustomMessage{MsgType: MsgTypeNews, News: &News{Articles: []Article{{URL: "u"}}}}, []string{"news.articles[0].title"}},
		{"mpnewsarticle", CustomMessage{MsgType: MsgTypeMPNewsArticle, MPNewsArticle: &MPNewsArticle{}}, []string{"mpnewsarticle.article_id"}},
		{"msgmenu", CustomMessage{MsgType: MsgTypeMsgMenu, MsgMenu: menu("1", "2")}, nil},
		{"msgmenu without items", CustomMessage{MsgType: MsgTypeMsgMenu, MsgMenu: menu()}, []string{"msgmenu.list"}},
		{"msgmenu ids empty and repeated", CustomMessage{MsgType: MsgTypeMsgMenu, MsgMenu: menu("1", "", "1")}, []string{"msgmenu.list[1].id", "msgmenu.list[2].id"}},
		{"wxcard", CustomMessage{MsgType: MsgTypeWxCard, WxCard: &WxCard{}}, []string{"wxcard.card_id"}},
		{"miniprogrampage", CustomMessage{MsgType: MsgTypeMiniProgramPage, MiniProgramPage: &MiniProgramPage{Title: "t", AppID: "a", PagePath: "p", ThumbFile: "/t.jpg"}}, nil},
		{"miniprogrampage empty", CustomMessage{MsgType: MsgTypeMiniProgramPage, MiniProgramPage: &MiniProgramPage{}},
			[]string{"miniprogrampage.title", "miniprogrampage.appid", "miniprogrampage.pagepath", "miniprogrampage.thumb_media_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, p := range tt.msg.Validate() {
				got = append(got, p.Path)
				if p.Msg == "" {
					t.Errorf("%s: empty message", p.Path)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems at %q, want %q (%v)", got, tt.want, tt.msg.Validate())
			}
		})
	}
}

func TestTemplateMessageValidate(t *testing.T) {
	data := map[string]TemplateValue{"first": {Value: "v"}}
	tests := []struct {
		name string
		msg  TemplateMessage
		want []string
	}{
		{"valid", TemplateMessage{TemplateID: "T", Data: data}, nil},
		{"empty", TemplateMessage{}, []string{"template_id", "data"}},
		{"blank keyword", TemplateMessage{TemplateID: "T", Data: map[string]TemplateValue{" ": {Value: "v"}}}, []string{"data"}},
		{"miniprogram without appid", TemplateMessage{TemplateID: "T", Data: data, MiniProgram: &TemplateMiniProgram{PagePath: "p"}}, []string{"miniprogram.appid"}},
	}
	for _, tt := range tests {
		var got []string
		for _, p := range tt.msg.Validate() {
			got = append(got, p.Path)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: problems at %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestValidateRecipient(t *testing.T) {
	if p := (&CustomMessage{}).ValidateRecipient(); len(p) != 1 || p[0].Path != "touser" {
		t.Errorf("custom without touser: %v", p)
	}
	if p := (&CustomMessage{ToUser: "o1"}).ValidateRecipient(); p != nil {
		t.Errorf("custom with touser: %v", p)
	}
	if p := (&TemplateMessage{}).ValidateRecipient(); len(p) != 1 || p[0].Path != "touser" {
		t.Errorf("template without touser: %v", p)
	}
}

func TestPayload(t *testing.T) {
	text := &Text{Content: "hi"}
	tests := []struct {
		msg  CustomMessage
		want any
	}{
		{CustomMessage{MsgType: MsgTypeText, Text: text}, text},
		{CustomMessage{MsgType: MsgTypeImage, Text: text}, nil},
		{CustomMessage{MsgType: "sticker"}, nil},
	}
	for _, tt := range tests {
		if got := tt.msg.Payload(); got != tt.want {
			t.Errorf("Payload() of %s = %v, want %v", tt.msg.MsgType, got, tt.want)
		}
	}
}

// validOfEachType is a message of each customer-service type that
// Validate accepts, with uploaded media (what a passive reply needs).
var validOfEachType = map[string]*CustomMessage{
	MsgTypeText:            {MsgType: MsgTypeText, Text: &Text{Content: "hi"}},
	MsgTypeImage:           {MsgType: MsgTypeImage, Image: &Media{MediaID: "m"}},
	MsgTypeVoice:           {MsgType: MsgTypeVoice, Voice: &Media{MediaID: "m"}},
	MsgTypeVideo:           {MsgType: MsgTypeVideo, Video: &Video{MediaID: "m", ThumbMediaID: "t"}},
	MsgTypeMusic:           {MsgType: MsgTypeMusic, Music: &Music{MusicURL: "u", HQMusicURL: "h", ThumbMediaID: "t"}},
	MsgTypeNews:            {MsgType: MsgTypeNews, News: &News{Articles: []Article{{Title: "t"}}}},
	MsgTypeMPNews:          {MsgType: MsgTypeMPNews, MPNews: &Media{MediaID: "m"}},
	MsgTypeMPNewsArticle:   {MsgType: MsgTypeMPNewsArticle, MPNewsArticle: &MPNewsArticle{ArticleID: "a"}},
	MsgTypeMsgMenu:         {MsgType: MsgTypeMsgMenu, MsgMenu: &MsgMenu{List: []MsgMenuItem{{ID: "1", Content: "yes"}}}},
	MsgTypeWxCard:          {MsgType: MsgTypeWxCard, WxCard: &WxCard{CardID: "c"}},
	MsgTypeMiniProgramPage: {MsgType: MsgTypeMiniProgramPage, MiniProgramPage: &MiniProgramPage{Title: "t", AppID: "a", PagePath: "p", ThumbMediaID: "t"}},
}

// IsPassiveType is what EncodeReply does: the rule loader refuses with it
// the passive replies that EncodeReply would refuse at run time.
func TestIsPassiveTypeAgreesWithEncodeReply(t *testing.T) {
	passive := []string{MsgTypeText, MsgTypeImage, MsgTypeVoice, MsgTypeVideo, MsgTypeMusic, MsgTypeNews}
	for _, typ := range CustomMsgTypes {
		m, ok := validOfEachType[typ]
		if !ok {
			t.Fatalf("no valid %s message to test with", typ)
		}
		if p := m.Validate(); p != nil {
			t.Fatalf("%s: the fixture is invalid: %v", typ, p)
		}
		_, err := EncodeReply("oU", "gh", 1, m)
		if got, want := IsPassiveType(typ), slices.Contains(passive, typ); got != want {
			t.Errorf("IsPassiveType(%s) = %v, want %v", typ, got, want)
		}
		if IsPassiveType(typ) != (err == nil) {
			t.Errorf("%s: IsPassiveType %v, but EncodeReply says %v", typ, IsPassiveType(typ), err)
		}
		if err != nil && !errors.Is(err, ErrNotPassive) {
			t.Errorf("%s: EncodeReply = %v, want ErrNotPassive", typ, err)
		}
	}
	for _, typ := range []string{"", "TEXT", "hologram", "event"} {
		if IsPassiveType(typ) {
			t.Errorf("IsPassiveType(%q) = true", typ)
		}
	}
}

func TestFieldProblemString(t *testing.T) {
	if got := (FieldProblem{Path: "text.content", Msg: "required"}).String(); got != "text.content: required" {
		t.Errorf("String() = %q", got)
	}
}
