package wechat

import (
	"context"
	"encoding/json"
	"strconv"
)

// Custom menu API paths.
const (
	PathMenuCreate         = "/cgi-bin/menu/create"
	PathMenuGet            = "/cgi-bin/menu/get"
	PathMenuAddConditional = "/cgi-bin/menu/addconditional"
	PathMenuDelete         = "/cgi-bin/menu/delete"
	PathSelfMenuInfo       = "/cgi-bin/get_current_selfmenu_info"
)

// Menu button types: the events they send come back to the callback as
// the event of the same name (CLICK and VIEW in capitals).
const (
	ButtonClick              = "click"
	ButtonView               = "view"
	ButtonMiniProgram        = "miniprogram"
	ButtonScancodePush       = "scancode_push"
	ButtonScancodeWaitMsg    = "scancode_waitmsg"
	ButtonPicSysPhoto        = "pic_sysphoto"
	ButtonPicPhotoOrAlbum    = "pic_photo_or_album"
	ButtonPicWeixin          = "pic_weixin"
	ButtonLocationSelect     = "location_select"
	ButtonMediaID            = "media_id"
	ButtonViewLimited        = "view_limited"
	ButtonArticleID          = "article_id"
	ButtonArticleViewLimited = "article_view_limited"
)

// Limits of menu/create, in bytes of UTF-8.
const (
	MaxMenuButtons     = 3
	MaxMenuSubButtons  = 5
	MaxButtonNameBytes = 16
	MaxSubNameBytes    = 60
	MaxButtonKeyBytes  = 128
	MaxButtonURLBytes  = 1024
)

// ButtonField names the field a button type needs beside its name: "key",
// "url", "media_id" or "article_id" ("url", with appid and pagepath, for
// miniprogram). ok is false for a type menu/create does not know.
func ButtonField(typ string) (field string, ok bool) {
	switch typ {
	case ButtonClick, ButtonScancodePush, ButtonScancodeWaitMsg, ButtonPicSysPhoto,
		ButtonPicPhotoOrAlbum, ButtonPicWeixin, ButtonLocationSelect:
		return "key", true
	case ButtonView, ButtonMiniProgram:
		return "url", true
	case ButtonMediaID, ButtonViewLimited:
		return "media_id", true
	case ButtonArticleID, ButtonArticleViewLimited:
		return "article_id", true
	}
	return "", false
}

// ButtonTypes lists the types menu/create takes, for messages.
var ButtonTypes = []string{
	ButtonClick, ButtonView, ButtonMiniProgram, ButtonScancodePush, ButtonScancodeWaitMsg,
	ButtonPicSysPhoto, ButtonPicPhotoOrAlbum, ButtonPicWeixin, ButtonLocationSelect,
	ButtonMediaID, ButtonViewLimited, ButtonArticleID, ButtonArticleViewLimited,
}

// Menu is the body of menu/create: the account's default menu.
type Menu struct {
	Button []MenuButton `json:"button" yaml:"button"`
}

// MenuButton is one button, exactly as menu/create takes it: a button
// with SubButton has only a name.
type MenuButton struct {
	Type      string       `json:"type,omitempty" yaml:"type,omitempty"`
	Name      string       `json:"name" yaml:"name"`
	Key       string       `json:"key,omitempty" yaml:"key,omitempty"`
	URL       string       `json:"url,omitempty" yaml:"url,omitempty"`
	AppID     string       `json:"appid,omitempty" yaml:"appid,omitempty"`
	PagePath  string       `json:"pagepath,omitempty" yaml:"pagepath,omitempty"`
	MediaID   string       `json:"media_id,omitempty" yaml:"media_id,omitempty"`
	ArticleID string       `json:"article_id,omitempty" yaml:"article_id,omitempty"`
	SubButton []MenuButton `json:"sub_button,omitempty" yaml:"sub_button,omitempty"`
}

// ConditionalMenu is the body of menu/addconditional: a menu shown to the
// users its MatchRule selects instead of the default one.
type ConditionalMenu struct {
	Button    []MenuButton `json:"button" yaml:"button"`
	MatchRule MatchRule    `json:"matchrule" yaml:"matchrule"`
}

// MatchRule selects the users of a conditional menu; empty fields match
// everyone. WeChat writes the numbers in it as strings when it takes
// them and sometimes as numbers when it returns them: both decode.
type MatchRule struct {
	TagID              string `json:"tag_id,omitempty" yaml:"tag_id,omitempty"`
	Sex                string `json:"sex,omitempty" yaml:"sex,omitempty"`
	Country            string `json:"country,omitempty" yaml:"country,omitempty"`
	Province           string `json:"province,omitempty" yaml:"province,omitempty"`
	City               string `json:"city,omitempty" yaml:"city,omitempty"`
	ClientPlatformType string `json:"client_platform_type,omitempty" yaml:"client_platform_type,omitempty"`
	Language           string `json:"language,omitempty" yaml:"language,omitempty"`
}

// IsZero reports whether r selects no one in particular, which
// addconditional refuses.
func (r MatchRule) IsZero() bool { return r == MatchRule{} }

// UnmarshalJSON accepts strings and numbers for every field.
func (r *MatchRule) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	fields := map[string]*string{
		"tag_id": &r.TagID, "sex": &r.Sex, "country": &r.Country, "province": &r.Province,
		"city": &r.City, "client_platform_type": &r.ClientPlatformType, "language": &r.Language,
	}
	for k, v := range raw {
		dst, ok := fields[k]
		if !ok {
			continue
		}
		var s string
		if err := json.Unmarshal(v, &s); err == nil {
			*dst = s
			continue
		}
		var n json.Number
		if err := json.Unmarshal(v, &n); err != nil {
			return err
		}
		*dst = n.String()
	}
	return nil
}

// CurrentMenus is what menu/get answers: the menus made through the API.
type CurrentMenus struct {
	Menu        Menu              `json:"menu"`
	Conditional []ConditionalMenu `json:"conditionalmenu,omitempty"`
}

// CreateMenu replaces the account's default menu (menu/create), which
// also removes its conditional menus.
func (c *Client) CreateMenu(ctx context.Context, m *Menu) error {
	return c.postJSON(ctx, PathMenuCreate, m, nil)
}

// AddConditionalMenu adds a conditional menu (menu/addconditional) and
// returns its menuid.
func (c *Client) AddConditionalMenu(ctx context.Context, m *ConditionalMenu) (string, error) {
	var ans struct {
		MenuID json.RawMessage `json:"menuid"`
	}
	if err := c.postJSON(ctx, PathMenuAddConditional, m, &ans); err != nil {
		return "", err
	}
	return unquote(ans.MenuID), nil
}

// DeleteMenu removes every menu of the account (menu/delete).
func (c *Client) DeleteMenu(ctx context.Context) error {
	return c.callWithToken(ctx, PathMenuDelete, nil, "", nil, c.timeout, nil)
}

// GetMenu returns the menus made through the API (menu/get). An account
// without one answers 46003.
func (c *Client) GetMenu(ctx context.Context) (*CurrentMenus, error) {
	var ans CurrentMenus
	if err := c.callWithToken(ctx, PathMenuGet, nil, "", nil, c.timeout, &ans); err != nil {
		return nil, err
	}
	return &ans, nil
}

// SelfMenuInfo is what get_current_selfmenu_info answers: the menu in
// force however it was made, its sub-buttons under sub_button.list.
// Buttons made in the MP console may have types menu/create does not
// take (text, img, voice, video, news).
type SelfMenuInfo struct {
	IsMenuOpen int `json:"is_menu_open"`
	Info       struct {
		Button []SelfMenuButton `json:"button"`
	} `json:"selfmenu_info"`
}

// SelfMenuButton is one button of SelfMenuInfo.
type SelfMenuButton struct {
	MenuButton
	SubButton *struct {
		List []SelfMenuButton `json:"list"`
	} `json:"sub_button,omitempty"`
}

// Menu returns the info as a menu/create body.
func (i *SelfMenuInfo) Menu() Menu {
	var conv func([]SelfMenuButton) []MenuButton
	conv = func(in []SelfMenuButton) []MenuButton {
		out := make([]MenuButton, 0, len(in))
		for _, b := range in {
			mb := b.MenuButton
			mb.SubButton = nil
			if b.SubButton != nil {
				mb.SubButton = conv(b.SubButton.List)
			}
			out = append(out, mb)
		}
		return out
	}
	return Menu{Button: conv(i.Info.Button)}
}

// GetSelfMenuInfo returns the menu in force (get_current_selfmenu_info).
func (c *Client) GetSelfMenuInfo(ctx context.Context) (*SelfMenuInfo, error) {
	var ans SelfMenuInfo
	if err := c.callWithToken(ctx, PathSelfMenuInfo, nil, "", nil, c.timeout, &ans); err != nil {
		return nil, err
	}
	return &ans, nil
}

// unquote turns a JSON string or number into its text.
func unquote(v json.RawMessage) string {
	if s, err := strconv.Unquote(string(v)); err == nil {
		return s
	}
	return string(v)
}
