package wechat

import (
	"bytes"
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// passiveReply is what WeChat reads from a passive reply.
type passiveReply struct {
	XMLName      xml.Name `xml:"xml"`
	ToUserName   string
	FromUserName string
	CreateTime   int64
	MsgType      string
	Content      string
	Image        struct{ MediaId string }
	Voice        struct{ MediaId string }
	Video        struct{ MediaId, Title, Description string }
	Music        struct{ Title, Description, MusicUrl, HQMusicUrl, ThumbMediaId string }
	ArticleCount int
	Articles     []struct{ Title, Description, PicUrl, Url string } `xml:"Articles>item"`
}

func TestEncodeReplyGolden(t *testing.T) {
	tests := []struct {
		name  string
		m     *CustomMessage
		check func(t *testing.T, r passiveReply)
	}{
		{"text", &CustomMessage{MsgType: "text", Text: &Text{Content: "你好！<a href=\"https://example.com\">官网</a>"}},
			func(t *testing.T, r passiveReply) {
				wantField(t, "Content", r.Content, "你好！<a href=\"https://example.com\">官网</a>")
			}},
		{"text_cdata_end", &CustomMessage{Text: &Text{Content: "a]]>b]]>]]>c"}},
			func(t *testing.T, r passiveReply) { wantField(t, "Content", r.Content, "a]]>b]]>]]>c") }},
		{"text_control_chars", &CustomMessage{Text: &Text{Content: "bell\a nul\x00 tab\t ok"}},
			func(t *testing.T, r passiveReply) {
				wantField(t, "Content", r.Content, "bell\uFFFD nul\uFFFD tab\t ok")
			}},
		{"image", &CustomMessage{MsgType: "image", Image: &Media{MediaID: "TEST_image_media_id"}},
			func(t *testing.T, r passiveReply) {
				wantField(t, "Image.MediaId", r.Image.MediaId, "TEST_image_media_id")
			}},
		{"voice", &CustomMessage{Voice: &Media{MediaID: "TEST_voice_media_id"}},
			func(t *testing.T, r passiveReply) {
				wantField(t, "Voice.MediaId", r.Voice.MediaId, "TEST_voice_media_id")
			}},
		{"video", &CustomMessage{MsgType: "video", Video: &Video{MediaID: "TEST_video_media_id", ThumbMediaID: "not in passive replies", Title: "演示", Description: "一分钟"}},
			func(t *testing.T, r passiveReply) {
				wantField(t, "Video.MediaId", r.Video.MediaId, "TEST_video_media_id")
				wantField(t, "Video.Title", r.Video.Title, "演示")
				wantField(t, "Video.Description", r.Video.Description, "一分钟")
			}},
		{"music", &CustomMessage{MsgType: "music", Music: &Music{Title: "今日推荐", Description: "轻音乐", MusicURL: "https://example.com/a.mp3", HQMusicURL: "https://example.com/a-hq.mp3", ThumbMediaID: "TEST_thumb"}},
			func(t *testing.T, r passiveReply) {
				wantField(t, "Music.Title", r.Music.Title, "今日推荐")
				wantField(t, "Music.Description", r.Music.Description, "轻音乐")
				wantField(t, "Music.MusicUrl", r.Music.MusicUrl, "https://example.com/a.mp3")
				wantField(t, "Music.HQMusicUrl", r.Music.HQMusicUrl, "https://example.com/a-hq.mp3")
				wantField(t, "Music.ThumbMediaId", r.Music.ThumbMediaId, "TEST_thumb")
			}},
		{"news", &CustomMessage{MsgType: "news", News: &News{Articles: []Article{
			{Title: "新手指南", Description: "三分钟了解我们", URL: "https://example.com/guide?a=1&b=2", PicURL: "https://example.com/g.png"},
		}}},
			func(t *testing.T, r passiveReply) {
				if r.ArticleCount != 1 || len(r.Articles) != 1 {
					t.Fatalf("ArticleCount %d, %d items", r.ArticleCount, len(r.Articles))
				}
				a := r.Articles[0]
				wantField(t, "Title", a.Title, "新手指南")
				wantField(t, "Description", a.Description, "三分钟了解我们")
				wantField(t, "Url", a.Url, "https://example.com/guide?a=1&b=2")
				wantField(t, "PicUrl", a.PicUrl, "https://example.com/g.png")
			}},
		{"news_two_articles", &CustomMessage{News: &News{Articles: []Article{{Title: "一", URL: "https://example.com/1"}, {Title: "二", URL: "https://example.com/2"}}}},
			func(t *testing.T, r passiveReply) {
				if r.ArticleCount != 2 || len(r.Articles) != 2 || r.Articles[1].Title != "二" {
					t.Errorf("ArticleCount %d, items %+v", r.ArticleCount, r.Articles)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := EncodeReply("oTEST_user_0001", "gh_test0000001", 1732520100, tt.m)
			if err != nil {
				t.Fatalf("EncodeReply: %v", err)
			}
			golden := filepath.Join("testdata", "reply", tt.name+".xml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./wechat -run TestEncodeReplyGolden -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("EncodeReply differs from %s:\ngot  %s\nwant %s", golden, got, want)
			}

			var r passiveReply
			if err := xml.Unmarshal(got, &r); err != nil {
				t.Fatalf("reply does not parse: %v\n%s", err, got)
			}
			wantField(t, "ToUserName", r.ToUserName, "oTEST_user_0001")
			wantField(t, "FromUserName", r.FromUserName, "gh_test0000001")
			if r.CreateTime != 1732520100 {
				t.Errorf("CreateTime = %d", r.CreateTime)
			}
			wantType := tt.m.MsgType
			if wantType == "" {
				wantType = strings.SplitN(tt.name, "_", 2)[0]
			}
			wantField(t, "MsgType", r.MsgType, wantType)
			tt.check(t, r)
		})
	}
}

func TestEncodeReplyRejects(t *testing.T) {
	nine := make([]Article, 9)
	for i := range nine {
		nine[i] = Article{Title: "t", URL: "https://example.com"}
	}
	tests := []struct {
		name string
		m    *CustomMessage
		want error
	}{
		{"nil", nil, ErrInvalidReply},
		{"empty", &CustomMessage{}, ErrInvalidReply},
		{"msgtype without payload", &CustomMessage{MsgType: "text"}, ErrInvalidReply},
		{"msgtype names another payload", &CustomMessage{MsgType: "image", Text: &Text{Content: "x"}}, ErrInvalidReply},
		{"two payloads, no msgtype", &CustomMessage{Text: &Text{Content: "x"}, Image: &Media{MediaID: "m"}}, ErrInvalidReply},
		{"image without media_id", &CustomMessage{Image: &Media{File: "a.jpg"}}, ErrInvalidReply},
		{"voice without media_id", &CustomMessage{Voice: &Media{}}, ErrInvalidReply},
		{"video without media_id", &CustomMessage{Video: &Video{Title: "t"}}, ErrInvalidReply},
		{"music without thumbnail", &CustomMessage{Music: &Music{MusicURL: "https://example.com/a.mp3"}}, ErrInvalidReply},
		{"news without articles", &CustomMessage{News: &News{}}, ErrInvalidReply},
		{"news with nine articles", &CustomMessage{News: &News{Articles: nine}}, ErrInvalidReply},
		{"mpnews", &CustomMessage{MsgType: "mpnews", MPNews: &Media{MediaID: "m"}}, ErrNotPassive},
		{"mpnewsarticle inferred", &CustomMessage{MPNewsArticle: &MPNewsArticle{ArticleID: "a"}}, ErrNotPassive},
		{"msgmenu", &CustomMessage{MsgMenu: &MsgMenu{List: []MsgMenuItem{{ID: "1", Content: "yes"}}}}, ErrNotPassive},
		{"wxcard", &CustomMessage{MsgType: "wxcard", WxCard: &WxCard{CardID: "c"}}, ErrNotPassive},
		{"miniprogrampage", &CustomMessage{MiniProgramPage: &MiniProgramPage{Title: "t"}}, ErrNotPassive},
		{"unknown msgtype", &CustomMessage{MsgType: "hologram", Text: &Text{Content: "x"}}, ErrNotPassive},
		{"upper-case msgtype", &CustomMessage{MsgType: "TEXT", Text: &Text{Content: "x"}}, ErrNotPassive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := EncodeReply("oU", "gh", 1, tt.m)
			if !errors.Is(err, tt.want) {
				t.Fatalf("EncodeReply = %s, %v; want %v", out, err, tt.want)
			}
			if out != nil {
				t.Errorf("EncodeReply returned output with its error")
			}
		})
	}
}
