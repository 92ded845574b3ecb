package wechattest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// The custom menu: menu/create, addconditional, get, delete and
// get_current_selfmenu_info, with menu/create's checks and errcodes.

// menuState is the account's menus as the fake keeps them.
type menuState struct {
	menu        *wechat.Menu // nil: none
	conditional []conditionalEntry
	nextID      int64
}

type conditionalEntry struct {
	id   int64
	menu wechat.ConditionalMenu
}

// Menu returns the default menu last created, nil when there is none.
func (s *Server) Menu() *wechat.Menu {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.menus.menu == nil {
		return nil
	}
	m := *s.menus.menu
	return &m
}

// ConditionalMenus returns the conditional menus added since the last
// menu/create, oldest first.
func (s *Server) ConditionalMenus() []wechat.ConditionalMenu {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]wechat.ConditionalMenu, len(s.menus.conditional))
	for i, e := range s.menus.conditional {
		out[i] = e.menu
	}
	return out
}

// SetMenu sets the account's default menu as if it were created (nil
// removes every menu), so a sandbox or a test can start with one.
func (s *Server) SetMenu(m *wechat.Menu) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.menus.menu, s.menus.conditional = m, nil
}

// serveMenu handles the menu APIs: forced failures, the token, then the
// payload, as serveMessage does. Calls are recorded with their body.
func (s *Server) serveMenu(w http.ResponseWriter, r *http.Request) {
	api := r.URL.Path
	write := api == wechat.PathMenuCreate || api == wechat.PathMenuAddConditional
	if write && r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	defer s.track()()
	rec := Received{API: api, Time: time.Now(), HTTPStatus: http.StatusOK}
	body, ans, ok := s.readCall(w, r, &rec)
	if !ok {
		return
	}
	var out any
	s.mu.Lock()
	ans = s.tokenAnswerLocked(r, ans)
	if ans.code == 0 {
		ans, out = s.menuCallLocked(api, body)
	}
	s.mu.Unlock()
	rec.ErrCode = ans.code
	s.record(rec)
	if ans.code != 0 || out == nil {
		writeErr(w, ans.code, ans.msg)
		return
	}
	writeJSON(w, out)
}

// menuCallLocked carries out one menu call and returns its answer, and
// the JSON to answer with when it succeeds with more than errcode 0.
func (s *Server) menuCallLocked(api string, body []byte) (answer, any) {
	malformed := answer{47001, "data format error"}
	switch api {
	case wechat.PathMenuCreate:
		var m wechat.Menu
		if json.Unmarshal(body, &m) != nil {
			return malformed, nil
		}
		if a := checkMenu(m.Button); a != 0 {
			return answer{a, menuErrMsg[a]}, nil
		}
		s.menus.menu, s.menus.conditional = &m, nil
		return okAnswer, nil
	case wechat.PathMenuAddConditional:
		var m wechat.ConditionalMenu
		if json.Unmarshal(body, &m) != nil {
			return malformed, nil
		}
		if a := checkMenu(m.Button); a != 0 {
			return answer{a, menuErrMsg[a]}, nil
		}
		if m.MatchRule.IsZero() {
			return answer{65304, "match rule empty"}, nil
		}
		if s.menus.menu == nil {
			return answer{65303, "there is no selfmenu, please create selfmenu first"}, nil
		}
		s.menus.nextID++
		id := 400000000 + s.menus.nextID
		s.menus.conditional = append(s.menus.conditional, conditionalEntry{id, m})
		return okAnswer, map[string]any{"menuid": strconv.FormatInt(id, 10)}
	case wechat.PathMenuDelete:
		s.menus.menu, s.menus.conditional = nil, nil
		return okAnswer, nil
	case wechat.PathMenuGet:
		if s.menus.menu == nil {
			return answer{46003, "menu no exist"}, nil
		}
		// The real API writes "sub_button": [] into every button
		// without sub-buttons, and numbers for menuid.
		type cond struct {
			Button    []getButton      `json:"button"`
			MatchRule wechat.MatchRule `json:"matchrule"`
			MenuID    int64            `json:"menuid"`
		}
		var out struct {
			Menu struct {
				Button []getButton `json:"button"`
				MenuID int64       `json:"menuid"`
			} `json:"menu"`
			Conditional []cond `json:"conditionalmenu,omitempty"`
		}
		out.Menu.Button, out.Menu.MenuID = getButtons(s.menus.menu.Button), 400000000
		for _, e := range s.menus.conditional {
			out.Conditional = append(out.Conditional, cond{getButtons(e.menu.Button), e.menu.MatchRule, e.id})
		}
		return okAnswer, out
	default: // get_current_selfmenu_info
		type selfButton struct {
			wechat.MenuButton
			SubButton *struct {
				List []wechat.MenuButton `json:"list"`
			} `json:"sub_button,omitempty"`
		}
		var out struct {
			IsMenuOpen int `json:"is_menu_open"`
			Info       struct {
				Button []selfButton `json:"button"`
			} `json:"selfmenu_info"`
		}
		if s.menus.menu != nil {
			out.IsMenuOpen = 1
			for _, b := range s.menus.menu.Button {
				sb := selfButton{MenuButton: b}
				if b.SubButton != nil {
					sb.SubButton = &struct {
						List []wechat.MenuButton `json:"list"`
					}{b.SubButton}
				}
				out.Info.Button = append(out.Info.Button, sb)
			}
		}
		return okAnswer, out
	}
}

// getButton is a button as menu/get writes it.
type getButton struct {
	wechat.MenuButton
	SubButton []getButton `json:"sub_button"`
}

func getButtons(list []wechat.MenuButton) []getButton {
	out := make([]getButton, len(list))
	for i, b := range list {
		out[i] = getButton{MenuButton: b, SubButton: getButtons(b.SubButton)}
	}
	return out
}

// menuErrMsg are WeChat's errmsgs of menu/create's errcodes.
var menuErrMsg = map[int]string{
	40016: "invalid button size",
	40017: "invalid button type",
	40018: "invalid button name size",
	40019: "invalid button key size",
	40020: "invalid button url size",
	40022: "invalid sub button level",
	40023: "invalid sub button size",
	40024: "invalid sub button type",
	40025: "invalid sub button name size",
	40026: "invalid sub button key size",
	40027: "invalid sub button url size",
	40007: "invalid media_id",
	47001: "data format error",
}

// checkMenu returns the errcode menu/create answers to buttons, 0 when it
// takes them: 40016 for no button or more than 3, 40023 for more than 5
// sub-buttons, 40018/40025 for a name over 16/60 bytes (or none), 40017/
// 40024 for an unknown type, 40019/40026 for a key missing or over 128
// bytes, 40020/40027 for a url missing or over 1024 bytes, 40022 for
// sub-buttons of sub-buttons, 40007 for a missing media_id, 47001 for a
// miniprogram without appid or pagepath or a missing article_id.
func checkMenu(buttons []wechat.MenuButton) int {
	if len(buttons) == 0 || len(buttons) > wechat.MaxMenuButtons {
		return 40016
	}
	for _, b := range buttons {
		if b.Name == "" || len(b.Name) > wechat.MaxButtonNameBytes {
			return 40018
		}
		if b.SubButton != nil {
			if len(b.SubButton) == 0 || len(b.SubButton) > wechat.MaxMenuSubButtons {
				return 40023
			}
			for _, sb := range b.SubButton {
				if sb.SubButton != nil {
					return 40022
				}
				if sb.Name == "" || len(sb.Name) > wechat.MaxSubNameBytes {
					return 40025
				}
				if c := checkButton(sb, 40024, 40026, 40027); c != 0 {
					return c
				}
			}
			continue
		}
		if c := checkButton(b, 40017, 40019, 40020); c != 0 {
			return c
		}
	}
	return 0
}

// checkButton checks a leaf button's type and fields with the errcodes of
// its level.
func checkButton(b wechat.MenuButton, badType, badKey, badURL int) int {
	field, ok := wechat.ButtonField(b.Type)
	if !ok {
		return badType
	}
	switch field {
	case "key":
		if b.Key == "" || len(b.Key) > wechat.MaxButtonKeyBytes {
			return badKey
		}
	case "url":
		if b.URL == "" || len(b.URL) > wechat.MaxButtonURLBytes {
			return badURL
		}
		if b.Type == wechat.ButtonMiniProgram && (b.AppID == "" || b.PagePath == "") {
			return 47001
		}
	case "media_id":
		if b.MediaID == "" {
			return 40007
		}
	case "article_id":
		if b.ArticleID == "" {
			return 47001
		}
	}
	return 0
}
