package tools

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wxreply/wxreply/wechat"
)

// TestSandboxMenuTaps: /menu lists the rules file's custom menu, /tap N
// and /tap N.M send the event WeChat sends for the button.
func TestSandboxMenuTaps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	src := `rules:
  - name: music
    match: {event: CLICK, event_key: V1001_TODAY_MUSIC}
    reply: [{text: hi}]
menu:
  button:
    - {type: click, name: 今日歌曲, key: V1001_TODAY_MUSIC}
    - name: 更多
      sub_button:
        - {type: view, name: 官网, url: "https://example.com"}
        - {type: click, name: 赞, key: V1001_GOOD}
        - {type: scancode_push, name: 扫一扫, key: SCAN_1}
        - {type: media_id, name: 图片, media_id: MEDIA_1}
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &scripted{}
	steps := []struct{ in, want string }{
		{"/menu", "[custom menu: /tap N or /tap N.M taps a button]\n" +
			"  1. 今日歌曲  (click V1001_TODAY_MUSIC)\n" +
			"  2. 更多 ▸\n" +
			"     2.1 官网  (view https://example.com)\n" +
			"     2.2 赞  (click V1001_GOOD)\n" +
			"     2.3 扫一扫  (scancode_push SCAN_1)\n" +
			"     2.4 图片  (media_id MEDIA_1)\n"},
		{"/tap 1", "[tapped 今日歌曲]\n< clicked V1001_TODAY_MUSIC\n"},
		{"/tap 2.2", "[tapped 赞]\n< clicked V1001_GOOD\n"},
		{"/tap 2.1", "[tapped 官网]\n(no reply)\n"},
		{"/tap 2.3", "[tapped 扫一扫]\n(no reply)\n"},
		{"/tap 2.4", "[tapped 图片]\n[WeChat shows the media itself: no event reaches the server]\n"},
		{"/tap 2", "[更多 opens a sub-menu: /tap 2.M taps one of its 4 buttons]\n"},
		{"/tap 1.1", "[no button 1.1: 今日歌曲 has no sub-menu]\n"},
		{"/tap 4", "[no button 4: /menu lists them]\n"},
		{"/tap 2.9", "[no button 2.9: /menu lists them]\n"},
		{"/tap", "usage: /tap N or /tap N.M (/menu lists the buttons)\n"},
		{"/quit", ""},
	}
	var input, want strings.Builder
	want.WriteString("wxreply sandbox: you are WeChat user " + SandboxOpenID + ", chatting with " + path + ".\n")
	want.WriteString("Type a message, or /help for the events you can send. Edits to the rules apply live; /quit or Ctrl-D ends.\n")
	for _, s := range steps {
		input.WriteString(s.in + "\n")
		want.WriteString("> " + s.in + "\n" + s.want)
	}
	got := runSandboxWith(t, SandboxOptions{Serve: scriptedServe(r), In: strings.NewReader(input.String()), RulesPath: path})
	if got != want.String() {
		t.Errorf("the terminal showed:\n%s\nwant:\n%s", got, want.String())
	}
	msgs := r.messages()
	wantEvents := []struct{ event, key string }{
		{wechat.EventClick, "V1001_TODAY_MUSIC"}, {wechat.EventClick, "V1001_GOOD"},
		{wechat.EventView, "https://example.com"}, {wechat.EventScancodePush, "SCAN_1"},
	}
	if len(msgs) != len(wantEvents) {
		t.Fatalf("server got %d callbacks, want %d", len(msgs), len(wantEvents))
	}
	for i, w := range wantEvents {
		if !msgs[i].IsEvent() || msgs[i].Event != w.event || msgs[i].EventKey != w.key {
			t.Errorf("callback %d: %s %q, want %s %q", i, msgs[i].Event, msgs[i].EventKey, w.event, w.key)
		}
	}
}
