package wechat

// The outbound messages: a customer-service message exactly as
// message/custom/send takes it, and a template message as
// message/template/send takes it. The same types decode rules.yaml reply
// items (yaml tags) and push-API requests (json tags), so both are checked
// by the same Validate.

// Message types of the customer-service API.
const (
	MsgTypeText            = "text"
	MsgTypeImage           = "image"
	MsgTypeVoice           = "voice"
	MsgTypeVideo           = "video"
	MsgTypeMusic           = "music"
	MsgTypeNews            = "news"
	MsgTypeMPNews          = "mpnews"
	MsgTypeMPNewsArticle   = "mpnewsarticle"
	MsgTypeMsgMenu         = "msgmenu"
	MsgTypeWxCard          = "wxcard"
	MsgTypeMiniProgramPage = "miniprogrampage"
)

// CustomMessage is one customer-service message. Exactly one of the
// payload pointers is set, the one named by MsgType.
type CustomMessage struct {
	ToUser  string `json:"touser" yaml:"-"`
	MsgType string `json:"msgtype" yaml:"-"`

	Text            *Text            `json:"text,omitempty" yaml:"text,omitempty"`
	Image           *Media           `json:"image,omitempty" yaml:"image,omitempty"`
	Voice           *Media           `json:"voice,omitempty" yaml:"voice,omitempty"`
	Video           *Video           `json:"video,omitempty" yaml:"video,omitempty"`
	Music           *Music           `json:"music,omitempty" yaml:"music,omitempty"`
	News            *News            `json:"news,omitempty" yaml:"news,omitempty"`
	MPNews          *Media           `json:"mpnews,omitempty" yaml:"mpnews,omitempty"`
	MPNewsArticle   *MPNewsArticle   `json:"mpnewsarticle,omitempty" yaml:"mpnewsarticle,omitempty"`
	MsgMenu         *MsgMenu         `json:"msgmenu,omitempty" yaml:"msgmenu,omitempty"`
	WxCard          *WxCard          `json:"wxcard,omitempty" yaml:"wxcard,omitempty"`
	MiniProgramPage *MiniProgramPage `json:"miniprogrampage,omitempty" yaml:"miniprogrampage,omitempty"`

	CustomService *CustomService `json:"customservice,omitempty" yaml:"-"`
}

// Text is a text message; Content may hold <a href> links, sent unescaped.
type Text struct {
	Content string `json:"content" yaml:"content"`
}

// Media names an uploaded media object. In rules.yaml File may stand in
// for MediaID: the sender uploads the file as temporary media on first use.
type Media struct {
	MediaID string `json:"media_id" yaml:"media_id,omitempty"`
	File    string `json:"-" yaml:"file,omitempty"`
}

// Video is a video message.
type Video struct {
	MediaID      string `json:"media_id" yaml:"media_id,omitempty"`
	ThumbMediaID string `json:"thumb_media_id,omitempty" yaml:"thumb_media_id,omitempty"`
	Title        string `json:"title,omitempty" yaml:"title,omitempty"`
	Description  string `json:"description,omitempty" yaml:"description,omitempty"`
	File         string `json:"-" yaml:"file,omitempty"`
	ThumbFile    string `json:"-" yaml:"thumb_file,omitempty"`
}

// Music is a music message.
type Music struct {
	Title        string `json:"title,omitempty" yaml:"title,omitempty"`
	Description  string `json:"description,omitempty" yaml:"description,omitempty"`
	MusicURL     string `json:"musicurl" yaml:"musicurl"`
	HQMusicURL   string `json:"hqmusicurl" yaml:"hqmusicurl"`
	ThumbMediaID string `json:"thumb_media_id" yaml:"thumb_media_id,omitempty"`
	ThumbFile    string `json:"-" yaml:"thumb_file,omitempty"`
}

// News is a link card; WeChat takes one article only (45008 otherwise).
type News struct {
	Articles []Article `json:"articles" yaml:"articles"`
}

// Article is the one article of News.
type Article struct {
	Title       string `json:"title" yaml:"title"`
	Description string `json:"description,omitempty" yaml:"description,omitempty"`
	URL         string `json:"url,omitempty" yaml:"url,omitempty"`
	PicURL      string `json:"picurl,omitempty" yaml:"picurl,omitempty"`
}

// MPNewsArticle points at a published article.
type MPNewsArticle struct {
	ArticleID string `json:"article_id" yaml:"article_id"`
}

// MsgMenu is a menu message: a click on an item comes back as a text
// message whose bizmsgmenuid is the item's ID.
type MsgMenu struct {
	HeadContent string        `json:"head_content,omitempty" yaml:"head_content,omitempty"`
	List        []MsgMenuItem `json:"list" yaml:"list"`
	TailContent string        `json:"tail_content,omitempty" yaml:"tail_content,omitempty"`
}

// MsgMenuItem is one choice of a MsgMenu.
type MsgMenuItem struct {
	ID      string `json:"id" yaml:"id"`
	Content string `json:"content" yaml:"content"`
}

// WxCard is a card-and-coupon message.
type WxCard struct {
	CardID string `json:"card_id" yaml:"card_id"`
}

// MiniProgramPage is a mini-program card.
type MiniProgramPage struct {
	Title        string `json:"title" yaml:"title"`
	AppID        string `json:"appid" yaml:"appid"`
	PagePath     string `json:"pagepath" yaml:"pagepath"`
	ThumbMediaID string `json:"thumb_media_id" yaml:"thumb_media_id,omitempty"`
	ThumbFile    string `json:"-" yaml:"thumb_file,omitempty"`
}

// CustomService sends the message as a named customer-service account.
type CustomService struct {
	KfAccount string `json:"kf_account"`
}

// TemplateMessage is a template message as message/template/send takes it.
type TemplateMessage struct {
	ToUser      string                   `json:"touser" yaml:"-"`
	TemplateID  string                   `json:"template_id" yaml:"template_id"`
	URL         string                   `json:"url,omitempty" yaml:"url,omitempty"`
	MiniProgram *TemplateMiniProgram     `json:"miniprogram,omitempty" yaml:"miniprogram,omitempty"`
	ClientMsgID string                   `json:"client_msg_id,omitempty" yaml:"-"`
	Data        map[string]TemplateValue `json:"data" yaml:"data"`
}

// TemplateMiniProgram opens a mini-program page from a template message.
type TemplateMiniProgram struct {
	AppID    string `json:"appid" yaml:"appid"`
	PagePath string `json:"pagepath,omitempty" yaml:"pagepath,omitempty"`
}

// TemplateValue is one keyword of a template message.
type TemplateValue struct {
	Value string `json:"value" yaml:"value"`
	Color string `json:"color,omitempty" yaml:"color,omitempty"`
}
