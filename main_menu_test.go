package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// menuEnv is the environment of an account on the fake API.
func menuEnv(api *wechattest.Server) map[string]string {
	return map[string]string{"WECHAT_APPID": api.AppID, "WECHAT_APPSECRET": api.AppSecret, "WECHAT_API_BASE": api.URL}
}

// sameJSON reports whether two JSON texts hold the same value.
func sameJSON(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("JSON %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &b); err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func writeRules(t *testing.T, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const menuRules = `rules:
  - name: music
    match: {event: CLICK, event_key: V1001_TODAY_MUSIC}
    reply: [{text: 今天推荐}]
menu:
  button:
    - {type: click, name: 今日歌曲, key: V1001_TODAY_MUSIC}
    - name: 更多
      sub_button:
        - {type: view, name: 官网, url: "https://example.com/?a=1&b=<2>"}
        - {type: miniprogram, name: 小程序, url: "https://example.com", appid: wx286b93c14bbf93aa, pagepath: pages/index}
        - {type: scancode_push, name: 扫一扫, key: SCAN_1}
        - {type: media_id, name: 图片, media_id: MEDIA_1}
        - {type: article_id, name: 文章, article_id: ARTICLE_1}
  conditional:
    - button: [{type: click, name: 女士专享, key: V1001_TODAY_MUSIC}]
      matchrule: {sex: "2", client_platform_type: 1}
`

const menuCreateBody = `{"button":[
  {"type":"click","name":"今日歌曲","key":"V1001_TODAY_MUSIC"},
  {"name":"更多","sub_button":[
    {"type":"view","name":"官网","url":"https://example.com/?a=1&b=<2>"},
    {"type":"miniprogram","name":"小程序","url":"https://example.com","appid":"wx286b93c14bbf93aa","pagepath":"pages/index"},
    {"type":"scancode_push","name":"扫一扫","key":"SCAN_1"},
    {"type":"media_id","name":"图片","media_id":"MEDIA_1"},
    {"type":"article_id","name":"文章","article_id":"ARTICLE_1"}]}]}`

// TestMenuPush: menu push sends `menu:` as menu/create's body, then each
// conditional menu to addconditional, and exits 0.
func TestMenuPush(t *testing.T) {
	api := wechattest.NewServer()
	t.Cleanup(api.Close)
	path := writeRules(t, menuRules)
	code, out, errOut := runWith(menuEnv(api), "menu", "push", path)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	created := api.Accepted(wechat.PathMenuCreate)
	if len(created) != 1 || !sameJSON(t, created[0].Body, menuCreateBody) {
		t.Fatalf("menu/create calls %d, body %s\nwant %s", len(created), created[0].Body, menuCreateBody)
	}
	if strings.Contains(string(created[0].Body), `\u003c`) {
		t.Errorf("the body escapes HTML: %s", created[0].Body)
	}
	added := api.Accepted(wechat.PathMenuAddConditional)
	wantCond := `{"button":[{"type":"click","name":"女士专享","key":"V1001_TODAY_MUSIC"}],"matchrule":{"sex":"2","client_platform_type":"1"}}`
	if len(added) != 1 || !sameJSON(t, added[0].Body, wantCond) {
		t.Fatalf("addconditional calls %d: %v\nwant %s", len(added), added, wantCond)
	}
	if !strings.Contains(out, "menu created: 2 buttons") || !strings.Contains(out, "conditional menu 1 added: menuid ") {
		t.Errorf("stdout %q", out)
	}
	if errOut != "" {
		t.Errorf("stderr %q", errOut)
	}

	// The default file comes from -rules or WXREPLY_RULES.
	env := menuEnv(api)
	env["WXREPLY_RULES"] = path
	if code, _, errOut := runWith(env, "menu", "push"); code != 0 {
		t.Errorf("WXREPLY_RULES: exit %d, stderr %q", code, errOut)
	}
}

// TestMenuPushRefused: WeChat's refusal exits 1 with its errcode and
// errmsg; the conditional menus are not sent after a refused default.
func TestMenuPushRefused(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(api *wechattest.Server)
		want    string
	}{
		{"forced errcode", func(api *wechattest.Server) { api.FailNext(wechat.PathMenuCreate, 40017, 1) }, "errcode 40017: forced failure"},
		{"48001", func(api *wechattest.Server) { api.FailNext(wechat.PathMenuCreate, 48001, 1) }, "errcode 48001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := wechattest.NewServer()
			t.Cleanup(api.Close)
			tt.prepare(api)
			code, _, errOut := runWith(menuEnv(api), "menu", "push", writeRules(t, menuRules))
			if code != 1 || !strings.Contains(errOut, "wxreply menu push: WeChat refused: "+tt.want) {
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, errOut, tt.want)
			}
			if n := len(api.Received()); n != 1 {
				t.Errorf("%d calls, want menu/create alone", n)
			}
		})
	}
}

// TestMenuPushConditionalRefused: a refused conditional menu exits 1
// and says that the default menu was created.
func TestMenuPushConditionalRefused(t *testing.T) {
	api := wechattest.NewServer()
	t.Cleanup(api.Close)
	api.FailNext(wechat.PathMenuAddConditional, 65305, 1)
	code, _, errOut := runWith(menuEnv(api), "menu", "push", writeRules(t, menuRules))
	want := "wxreply menu push: conditional menu 1 (the default menu was created): WeChat refused: errcode 65305: forced failure"
	if code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("exit %d, stderr %q; want 1 and %q", code, errOut, want)
	}
	if len(api.Accepted(wechat.PathMenuCreate)) != 1 || api.Menu() == nil {
		t.Error("the default menu was not created")
	}
}

// TestMenuPushInvalid: an invalid menu is reported as FILE:LINE:COL lines,
// exits 1 and sends nothing; it needs no credentials to be reported.
func TestMenuPushInvalid(t *testing.T) {
	api := wechattest.NewServer()
	t.Cleanup(api.Close)
	path := writeRules(t, "menu:\n  button:\n    - {type: click, name: 今日歌曲今日歌曲, key: K}\n    - {type: clik, name: b, key: K}\n")
	for _, env := range []map[string]string{menuEnv(api), {}} {
		code, out, errOut := runWith(env, "menu", "push", path)
		want := []string{
			path + `:3:27: menu.button[0].name: "今日歌曲今日歌曲" is 24 bytes`,
			path + `:4:14: menu.button[1].type: unknown button type "clik"`,
			"wxreply menu push: " + path + " is invalid: nothing was sent",
		}
		lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
		if code != 1 || out != "" || len(lines) != len(want) {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		for i, w := range want {
			if !strings.HasPrefix(lines[i], w) {
				t.Errorf("line %d %q, want %q…", i+1, lines[i], w)
			}
		}
	}
	if n := len(api.Received()); n != 0 {
		t.Errorf("%d calls: an invalid menu sent something", n)
	}

	// A file without menu: sends nothing either.
	code, _, errOut := runWith(menuEnv(api), "menu", "push", writeRules(t, "default: {reply: [{text: x}]}\n"))
	if code != 1 || !strings.Contains(errOut, "has no menu: nothing was sent") || len(api.Received()) != 0 {
		t.Errorf("no menu: exit %d, stderr %q", code, errOut)
	}
}

// TestMenuPullPushRoundTrip: pull prints a menu: block that push sends
// back as the same menu/create and addconditional bodies.
func TestMenuPullPushRoundTrip(t *testing.T) {
	api := wechattest.NewServer()
	t.Cleanup(api.Close)
	if code, _, errOut := runWith(menuEnv(api), "menu", "push", writeRules(t, menuRules)); code != 0 {
		t.Fatalf("push: exit %d, %q", code, errOut)
	}
	code, pulled, errOut := runWith(menuEnv(api), "menu", "pull")
	if code != 0 || !strings.HasPrefix(pulled, "menu:\n  button:\n") || !strings.Contains(pulled, "  conditional:\n") {
		t.Fatalf("pull: exit %d, stdout %q, stderr %q", code, pulled, errOut)
	}
	first := api.Accepted(wechat.PathMenuCreate)[0].Body
	firstCond := api.Accepted(wechat.PathMenuAddConditional)[0].Body

	other := wechattest.NewServer()
	t.Cleanup(other.Close)
	if code, _, errOut := runWith(menuEnv(other), "menu", "push", writeRules(t, pulled)); code != 0 {
		t.Fatalf("push of the pulled menu: exit %d, %q\n%s", code, errOut, pulled)
	}
	if again := other.Accepted(wechat.PathMenuCreate); len(again) != 1 || !sameJSON(t, again[0].Body, string(first)) {
		t.Errorf("round trip changed the menu:\n%s\nwas %s", again[0].Body, first)
	}
	if again := other.Accepted(wechat.PathMenuAddConditional); len(again) != 1 || !sameJSON(t, again[0].Body, string(firstCond)) {
		t.Errorf("round trip changed the conditional menu: %v, was %s", again, firstCond)
	}
}

// TestMenuPullConsole: a menu made in the MP console is not in menu/get
// (46003); pull reads get_current_selfmenu_info instead. An account with
// no menu at all exits 1.
func TestMenuPullConsole(t *testing.T) {
	api := wechattest.NewServer()
	t.Cleanup(api.Close)
	if code, _, errOut := runWith(menuEnv(api), "menu", "pull"); code != 1 || !strings.Contains(errOut, "no menu") {
		t.Errorf("no menu: exit %d, stderr %q", code, errOut)
	}
	api.SetMenu(&wechat.Menu{Button: []wechat.MenuButton{
		{Type: "click", Name: "a", Key: "A"},
		{Name: "b", SubButton: []wechat.MenuButton{{Type: "view", Name: "v", URL: "https://x.example"}}},
	}})
	api.FailNext(wechat.PathMenuGet, 46003, 1)
	code, out, errOut := runWith(menuEnv(api), "menu", "pull")
	want := "menu:\n  button:\n    - type: click\n      name: a\n      key: A\n    - name: b\n      sub_button:\n        - type: view\n          name: v\n          url: https://x.example\n"
	if code != 0 || out != want {
		t.Errorf("exit %d, stderr %q, stdout\n%s\nwant\n%s", code, errOut, out, want)
	}
}

// TestMenuPullConsoleOnly: a console menu with a button the API cannot
// make exits 1 naming it, rather than print a menu push would refuse.
func TestMenuPullConsoleOnly(t *testing.T) {
	api := wechattest.NewServer()
	t.Cleanup(api.Close)
	api.SetMenu(&wechat.Menu{Button: []wechat.MenuButton{{Type: "text", Name: "公告"}}})
	api.FailNext(wechat.PathMenuGet, 46003, 1)
	code, out, errOut := runWith(menuEnv(api), "menu", "pull")
	if code != 1 || out != "" || !strings.Contains(errOut, `the button "公告" has the type "text", which only the MP console makes`) {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestMenuUsage(t *testing.T) {
	for _, args := range [][]string{{"menu"}, {"menu", "list"}, {"menu", "pull", "x"}, {"menu", "push", "a", "b"}} {
		if code, _, _ := runWith(nil, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	path := writeRules(t, menuRules)
	if code, _, errOut := runWith(nil, "menu", "push", path); code != 2 || !strings.Contains(errOut, "WECHAT_APPID") {
		t.Errorf("no credentials: exit %d, %q", code, errOut)
	}
}
