package tools

import (
	"encoding/xml"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/wxreply/wxreply/wechat"
)

// How the sandbox shows messages: roughly what the WeChat client shows,
// in text. Each message starts with "< "; its further lines are indented.

// writeLines prints one message.
func writeLines(w io.Writer, lines []string) {
	for i, l := range lines {
		prefix := "  "
		if i == 0 {
			prefix = "< "
		}
		fmt.Fprintf(w, "%s%s\n", prefix, l)
	}
}

// link matches the <a href> links a text may carry; WeChat shows their
// label as a link.
var link = regexp.MustCompile(`(?s)<a\s[^>]*?href="([^"]*)"[^>]*>(.*?)</a>`)

// renderCustom renders a customer-service message or a passive reply.
func renderCustom(m *wechat.CustomMessage) []string {
	switch p := m.Payload().(type) {
	case *wechat.Text:
		return strings.Split(link.ReplaceAllString(p.Content, "$2 <$1>"), "\n")
	case *wechat.Media:
		name := map[string]string{
			wechat.MsgTypeImage:  "[image]",
			wechat.MsgTypeVoice:  "[voice message]",
			wechat.MsgTypeMPNews: "[article]",
		}[m.MsgType]
		return []string{name + " media_id " + p.MediaID}
	case *wechat.Video:
		return append([]string{"[video] " + p.Title}, nonEmpty(p.Description, "media_id "+p.MediaID)...)
	case *wechat.Music:
		return append([]string{"[music] " + p.Title}, nonEmpty(p.Description, p.MusicURL)...)
	case *wechat.News:
		var lines []string
		for _, a := range p.Articles {
			lines = append(lines, "[link card] "+a.Title)
			lines = append(lines, nonEmpty(a.Description, a.URL)...)
		}
		return lines
	case *wechat.MPNewsArticle:
		return []string{"[article] article_id " + p.ArticleID}
	case *wechat.MsgMenu:
		lines := nonEmpty(p.HeadContent)
		for i, it := range p.List {
			lines = append(lines, "  "+strconv.Itoa(i+1)+". "+it.Content)
		}
		lines = append(lines, nonEmpty(p.TailContent)...)
		return append(lines, "(type a number to choose)")
	case *wechat.WxCard:
		return []string{"[card & coupon] card_id " + p.CardID}
	case *wechat.MiniProgramPage:
		return []string{"[mini program] " + p.Title, p.AppID + " " + p.PagePath}
	}
	if m.MsgType == wechat.MsgTypeTransferCustomerService {
		return []string{"[handed over to the account's human customer-service agents]"}
	}
	return []string{fmt.Sprintf("[%s message]", m.MsgType)}
}

// renderTemplate renders a template message: its keywords in order.
func renderTemplate(t *wechat.TemplateMessage) []string {
	lines := []string{"[template message] " + t.TemplateID}
	keys := make([]string, 0, len(t.Data))
	for k := range t.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		lines = append(lines, k+": "+t.Data[k].Value)
	}
	if t.URL != "" {
		lines = append(lines, t.URL)
	}
	if mp := t.MiniProgram; mp != nil {
		lines = append(lines, "mini program "+mp.AppID+" "+mp.PagePath)
	}
	return lines
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if strings.TrimSpace(s) != "" {
			out = append(out, s)
		}
	}
	return out
}

// passiveXML is a passive reply as the server writes it.
type passiveXML struct {
	MsgType string `xml:"MsgType"`
	Content string `xml:"Content"`
	Image   struct {
		MediaID string `xml:"MediaId"`
	} `xml:"Image"`
	Voice struct {
		MediaID string `xml:"MediaId"`
	} `xml:"Voice"`
	Video struct {
		MediaID     string `xml:"MediaId"`
		Title       string `xml:"Title"`
		Description string `xml:"Description"`
	} `xml:"Video"`
	Music struct {
		Title        string `xml:"Title"`
		Description  string `xml:"Description"`
		MusicURL     string `xml:"MusicUrl"`
		HQMusicURL   string `xml:"HQMusicUrl"`
		ThumbMediaID string `xml:"ThumbMediaId"`
	} `xml:"Music"`
	Articles []struct {
		Title       string `xml:"Title"`
		Description string `xml:"Description"`
		PicURL      string `xml:"PicUrl"`
		URL         string `xml:"Url"`
	} `xml:"Articles>item"`
}

// parsePassive reads a passive reply into the message it stands for.
func parsePassive(b []byte) (*wechat.CustomMessage, error) {
	var p passiveXML
	if err := xml.Unmarshal(b, &p); err != nil {
		return nil, err
	}
	m := &wechat.CustomMessage{MsgType: p.MsgType}
	switch p.MsgType {
	case wechat.MsgTypeText:
		m.Text = &wechat.Text{Content: p.Content}
	case wechat.MsgTypeImage:
		m.Image = &wechat.Media{MediaID: p.Image.MediaID}
	case wechat.MsgTypeVoice:
		m.Voice = &wechat.Media{MediaID: p.Voice.MediaID}
	case wechat.MsgTypeVideo:
		m.Video = &wechat.Video{MediaID: p.Video.MediaID, Title: p.Video.Title, Description: p.Video.Description}
	case wechat.MsgTypeMusic:
		mu := p.Music
		m.Music = &wechat.Music{Title: mu.Title, Description: mu.Description, MusicURL: mu.MusicURL, HQMusicURL: mu.HQMusicURL, ThumbMediaID: mu.ThumbMediaID}
	case wechat.MsgTypeNews:
		m.News = &wechat.News{}
		for _, a := range p.Articles {
			m.News.Articles = append(m.News.Articles, wechat.Article{Title: a.Title, Description: a.Description, PicURL: a.PicURL, URL: a.URL})
		}
	default:
		return nil, fmt.Errorf("MsgType %q is not a passive reply", p.MsgType)
	}
	return m, nil
}
