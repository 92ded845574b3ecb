package rules

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/template"

	"github.com/wxreply/wxreply/wechat"
)

// TemplateData is what a reply's text/template sees: every field of the
// inbound message ({{.Content}}, {{.FromUserName}}, {{.EventKey}}, …) and
// Groups, the submatches of the rule's regex ({{index .Groups 1}}; empty
// for rules without one).
type TemplateData struct {
	*wechat.Message
	Groups []string
}

// item is one compiled reply item: the decoded message, used as a
// prototype, and the templates of its string fields.
type item struct {
	custom   *wechat.CustomMessage           // a customer-service message, or
	template *wechat.TemplateMessage         // a template message, or
	webhook  *webhook                        // a call to the operator's service, or
	transfer *wechat.TransferCustomerService // the hand-over to human agents
	// tmpls has one entry per string field, in the order visitCustom or
	// visitTemplate walks them; nil where the field is plain text.
	tmpls []*template.Template
	// templated says whether any field is a template: an item without one
	// is copied as it is, validated once when the rules loaded.
	templated bool
}

// visitCustom calls f with the path and address of every string field of
// m's payload that a reply template may fill: all of them but the local
// file paths, which were resolved when the file was loaded.
func visitCustom(m *wechat.CustomMessage, f func(path string, s *string)) {
	if p := m.Text; p != nil {
		f("text.content", &p.Content)
	}
	if p := m.Image; p != nil {
		f("image.media_id", &p.MediaID)
	}
	if p := m.Voice; p != nil {
		f("voice.media_id", &p.MediaID)
	}
	if p := m.MPNews; p != nil {
		f("mpnews.media_id", &p.MediaID)
	}
	if p := m.Video; p != nil {
		f("video.media_id", &p.MediaID)
		f("video.thumb_media_id", &p.ThumbMediaID)
		f("video.title", &p.Title)
		f("video.description", &p.Description)
	}
	if p := m.Music; p != nil {
		f("music.title", &p.Title)
		f("music.description", &p.Description)
		f("music.musicurl", &p.MusicURL)
		f("music.hqmusicurl", &p.HQMusicURL)
		f("music.thumb_media_id", &p.ThumbMediaID)
	}
	if p := m.News; p != nil {
		for i := range p.Articles {
			a, at := &p.Articles[i], indexPath("news.articles", i)
			f(at+".title", &a.Title)
			f(at+".description", &a.Description)
			f(at+".url", &a.URL)
			f(at+".picurl", &a.PicURL)
		}
	}
	if p := m.MPNewsArticle; p != nil {
		f("mpnewsarticle.article_id", &p.ArticleID)
	}
	if p := m.MsgMenu; p != nil {
		f("msgmenu.head_content", &p.HeadContent)
		for i := range p.List {
			at := indexPath("msgmenu.list", i)
			f(at+".id", &p.List[i].ID)
			f(at+".content", &p.List[i].Content)
		}
		f("msgmenu.tail_content", &p.TailContent)
	}
	if p := m.WxCard; p != nil {
		f("wxcard.card_id", &p.CardID)
	}
	if p := m.MiniProgramPage; p != nil {
		f("miniprogrampage.title", &p.Title)
		f("miniprogrampage.appid", &p.AppID)
		f("miniprogrampage.pagepath", &p.PagePath)
		f("miniprogrampage.thumb_media_id", &p.ThumbMediaID)
	}
}

// visitTemplate is visitCustom for a template message; data keywords are
// walked in sorted order so that the walk is the same every time.
func visitTemplate(m *wechat.TemplateMessage, f func(path string, s *string)) {
	f("template_id", &m.TemplateID)
	f("url", &m.URL)
	if p := m.MiniProgram; p != nil {
		f("miniprogram.appid", &p.AppID)
		f("miniprogram.pagepath", &p.PagePath)
	}
	for _, k := range sortedKeys(m.Data) {
		v := m.Data[k]
		f("data."+k+".value", &v.Value)
		f("data."+k+".color", &v.Color)
		m.Data[k] = v
	}
}

// cloneCustom copies m deeply enough that filling the copy's strings
// leaves m as it was: the prototype is shared by every request.
func cloneCustom(m *wechat.CustomMessage) *wechat.CustomMessage {
	c := *m
	c.Text = clonePtr(m.Text)
	c.Image = clonePtr(m.Image)
	c.Voice = clonePtr(m.Voice)
	c.MPNews = clonePtr(m.MPNews)
	c.Video = clonePtr(m.Video)
	c.Music = clonePtr(m.Music)
	c.MPNewsArticle = clonePtr(m.MPNewsArticle)
	c.WxCard = clonePtr(m.WxCard)
	c.MiniProgramPage = clonePtr(m.MiniProgramPage)
	c.CustomService = clonePtr(m.CustomService)
	if c.News = clonePtr(m.News); c.News != nil {
		c.News.Articles = slices.Clone(c.News.Articles)
	}
	if c.MsgMenu = clonePtr(m.MsgMenu); c.MsgMenu != nil {
		c.MsgMenu.List = slices.Clone(c.MsgMenu.List)
	}
	return &c
}

func cloneTemplate(m *wechat.TemplateMessage) *wechat.TemplateMessage {
	c := *m
	c.MiniProgram = clonePtr(m.MiniProgram)
	if m.Data != nil {
		c.Data = make(map[string]wechat.TemplateValue, len(m.Data))
		for k, v := range m.Data {
			c.Data[k] = v
		}
	}
	return &c
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}

// compileTemplates parses every string field of the item that holds a
// template action. It returns one problem per field that does not parse,
// keyed by the field's path. groups is how long .Groups can be for the
// rule (see groupCount).
func (it *item) compileTemplates(prefix string, groups int) []fieldError {
	var errs []fieldError
	add := func(path string, s *string) {
		var t *template.Template
		if strings.Contains(*s, "{{") {
			var err error
			t, err = parseTemplate(prefix+path, *s, groups)
			if err != nil {
				errs = append(errs, fieldError{path, err})
			}
		}
		it.tmpls = append(it.tmpls, t)
		it.templated = it.templated || t != nil
	}
	if it.custom != nil {
		visitCustom(it.custom, add)
	} else {
		visitTemplate(it.template, add)
	}
	return errs
}

type fieldError struct {
	path string
	err  error
}

// render returns a filled copy of the item's message.
func (it *item) render(data *TemplateData) (*wechat.CustomMessage, *wechat.TemplateMessage, error) {
	var err error
	i := 0
	fill := func(path string, s *string) {
		t := it.tmpls[i]
		i++
		if t == nil || err != nil {
			return
		}
		var b strings.Builder
		if e := t.Execute(&b, data); e != nil {
			err = fmt.Errorf("%s: %w", path, e)
			return
		}
		*s = b.String()
	}
	if it.custom != nil {
		c := cloneCustom(it.custom)
		if !it.templated {
			return c, nil, nil
		}
		visitCustom(c, fill)
		if err != nil {
			return nil, nil, err
		}
		return c, nil, renderError(c.Validate())
	}
	t := cloneTemplate(it.template)
	if !it.templated {
		return nil, t, nil
	}
	visitTemplate(t, fill)
	if err != nil {
		return nil, nil, err
	}
	return nil, t, renderError(t.Validate())
}

// renderError reports a rendered message WeChat would refuse, such as a
// text whose template came out empty.
func renderError(problems []wechat.FieldProblem) error {
	if len(problems) == 0 {
		return nil
	}
	msgs := make([]string, len(problems))
	for i, p := range problems {
		msgs[i] = p.String()
	}
	return errors.New("rendered message is invalid: " + strings.Join(msgs, "; "))
}

// parseTemplate parses src and checks that the fields it reads from the
// message exist, so that a typo such as {{.Contnet}} is a load error, not
// a reply skipped at every message. So is `index .Groups N` when the
// rule's .Groups never has N+1 entries (groups; unknownGroups: unchecked).
func parseTemplate(name, src string, groups int) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(src)
	if err != nil {
		// "template: NAME:LINE: msg": the position is the field's already.
		msg := strings.TrimPrefix(err.Error(), "template: "+name+":")
		if line, rest, ok := strings.Cut(msg, ": "); ok {
			msg = rest
			if line != "1" {
				msg = "line " + line + " of the value: " + rest
			}
		}
		return nil, errors.New(msg)
	}
	if t.Tree != nil {
		if err := checkFields(t.Tree.Root, groups); err != nil {
			return nil, err
		}
	}
	return t, nil
}
