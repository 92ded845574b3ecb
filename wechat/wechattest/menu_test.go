package wechattest

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/wxreply/wxreply/wechat"
)

func menuClient(t *testing.T) (*Server, *wechat.Client) {
	t.Helper()
	s := NewServer()
	t.Cleanup(s.Close)
	c := wechat.NewClient(wechat.ClientOptions{BaseURL: s.URL, AppID: s.AppID, AppSecret: s.AppSecret, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(c.Close)
	return s, c
}

func errcode(err error) int {
	var ae *wechat.APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return -999
}

// TestMenuCreateErrcodes: menu/create refuses what the real API refuses,
// with its errcodes, and keeps the previous menu.
func TestMenuCreateErrcodes(t *testing.T) {
	click := func(name, key string) wechat.MenuButton {
		return wechat.MenuButton{Type: "click", Name: name, Key: key}
	}
	parent := func(subs ...wechat.MenuButton) wechat.MenuButton {
		return wechat.MenuButton{Name: "more", SubButton: subs}
	}
	tests := []struct {
		name    string
		buttons []wechat.MenuButton
		want    int
	}{
		{"no button", nil, 40016},
		{"four buttons", []wechat.MenuButton{click("a", "A"), click("b", "B"), click("c", "C"), click("d", "D")}, 40016},
		{"unknown type", []wechat.MenuButton{{Type: "clik", Name: "a", Key: "A"}}, 40017},
		{"top name over 16 bytes", []wechat.MenuButton{click("今日歌曲今日歌曲", "A")}, 40018},
		{"no name", []wechat.MenuButton{click("", "A")}, 40018},
		{"key over 128 bytes", []wechat.MenuButton{click("a", strings.Repeat("k", 129))}, 40019},
		{"no key", []wechat.MenuButton{click("a", "")}, 40019},
		{"view without url", []wechat.MenuButton{{Type: "view", Name: "a"}}, 40020},
		{"url over 1024 bytes", []wechat.MenuButton{{Type: "view", Name: "a", URL: "https://x/" + strings.Repeat("u", 1024)}}, 40020},
		{"six sub-buttons", []wechat.MenuButton{parent(click("1", "1"), click("2", "2"), click("3", "3"), click("4", "4"), click("5", "5"), click("6", "6"))}, 40023},
		{"empty sub_button", []wechat.MenuButton{parent()}, 40017}, // omitted from the JSON: a button without type
		{"sub type", []wechat.MenuButton{parent(wechat.MenuButton{Type: "x", Name: "a", Key: "A"})}, 40024},
		{"sub name over 60 bytes", []wechat.MenuButton{parent(click(strings.Repeat("名", 21), "A"))}, 40025},
		{"sub key", []wechat.MenuButton{parent(click("a", ""))}, 40026},
		{"sub url", []wechat.MenuButton{parent(wechat.MenuButton{Type: "view", Name: "a"})}, 40027},
		{"three levels", []wechat.MenuButton{parent(parent(click("a", "A")))}, 40022},
		{"miniprogram without appid", []wechat.MenuButton{{Type: "miniprogram", Name: "a", URL: "https://x", PagePath: "p"}}, 47001},
		{"media_id without media_id", []wechat.MenuButton{{Type: "media_id", Name: "a"}}, 40007},
		{"sub name of 60 bytes is fine", []wechat.MenuButton{parent(click(strings.Repeat("名", 20), "A"))}, 0},
		{"top name of 16 bytes is fine", []wechat.MenuButton{click("今日歌曲x", "A")}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c := menuClient(t)
			before := &wechat.Menu{Button: []wechat.MenuButton{click("keep", "K")}}
			s.SetMenu(before)
			err := c.CreateMenu(context.Background(), &wechat.Menu{Button: tt.buttons})
			if tt.want == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if got := errcode(err); got != tt.want {
				t.Fatalf("errcode %d (%v), want %d", got, err, tt.want)
			}
			if m := s.Menu(); m == nil || m.Button[0].Name != "keep" {
				t.Errorf("a refused menu replaced the menu: %+v", m)
			}
			if rec := s.Received(); len(rec) != 1 || rec[0].ErrCode != tt.want || rec[0].Body == nil {
				t.Errorf("recorded %+v", rec)
			}
		})
	}
}

// TestMenuLifecycle: create, addconditional, get, selfmenu info, delete.
func TestMenuLifecycle(t *testing.T) {
	s, c := menuClient(t)
	ctx := context.Background()
	if _, err := c.GetMenu(ctx); errcode(err) != 46003 {
		t.Fatalf("get without a menu: %v, want 46003", err)
	}
	cond := &wechat.ConditionalMenu{Button: []wechat.MenuButton{{Type: "click", Name: "c", Key: "C"}}, MatchRule: wechat.MatchRule{Sex: "1"}}
	if _, err := c.AddConditionalMenu(ctx, cond); errcode(err) != 65303 {
		t.Fatalf("addconditional without a menu: %v, want 65303", err)
	}
	m := &wechat.Menu{Button: []wechat.MenuButton{
		{Type: "click", Name: "a", Key: "A"},
		{Name: "b", SubButton: []wechat.MenuButton{{Type: "view", Name: "v", URL: "https://x"}}},
	}}
	if err := c.CreateMenu(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddConditionalMenu(ctx, &wechat.ConditionalMenu{Button: cond.Button}); errcode(err) != 65304 {
		t.Fatalf("addconditional without matchrule: %v, want 65304", err)
	}
	id, err := c.AddConditionalMenu(ctx, cond)
	if err != nil || id == "" {
		t.Fatalf("addconditional: %q, %v", id, err)
	}
	got, err := c.GetMenu(ctx)
	if err != nil || len(got.Menu.Button) != 2 || got.Menu.Button[1].SubButton[0].URL != "https://x" ||
		len(got.Conditional) != 1 || got.Conditional[0].MatchRule.Sex != "1" {
		t.Fatalf("get: %+v, %v", got, err)
	}
	info, err := c.GetSelfMenuInfo(ctx)
	if err != nil || info.IsMenuOpen != 1 {
		t.Fatalf("selfmenu: %+v, %v", info, err)
	}
	if back := info.Menu(); len(back.Button) != 2 || back.Button[1].SubButton[0].Name != "v" || back.Button[0].SubButton != nil {
		t.Errorf("selfmenu as a menu: %+v", back)
	}
	if err := c.DeleteMenu(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Menu() != nil || len(s.ConditionalMenus()) != 0 {
		t.Error("delete left a menu")
	}
	if _, err := c.GetMenu(ctx); errcode(err) != 46003 {
		t.Errorf("get after delete: %v", err)
	}
}

// TestMatchRuleNumbers: menu/get may write a matchrule's numbers as
// numbers; they decode as strings.
func TestMatchRuleNumbers(t *testing.T) {
	var r wechat.MatchRule
	if err := r.UnmarshalJSON([]byte(`{"tag_id":2,"sex":"1","client_platform_type":3,"language":"zh_CN","group_id":5}`)); err != nil {
		t.Fatal(err)
	}
	if want := (wechat.MatchRule{TagID: "2", Sex: "1", ClientPlatformType: "3", Language: "zh_CN"}); r != want {
		t.Errorf("%+v, want %+v", r, want)
	}
}
