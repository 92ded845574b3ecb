package rules

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wxreply/wxreply/wechat"
)

// TestMenuProblems: `menu:` is checked as menu/create checks it, each
// problem at its position.
func TestMenuProblems(t *testing.T) {
	src := `rules:
  - name: music
    match: {event: CLICK, event_key: V1}
    reply: [{text: hi}]
menu:
  button:
    - {type: click, name: 今日歌曲今日歌曲, key: V1}
    - name: 更多
      type: click
      sub_button:
        - {type: view, name: 官网, url: "example.com"}
        - {type: clik, name: x, key: K}
        - {type: miniprogram, name: mp, url: "https://a.b"}
        - {type: click, name: "", key: V1}
        - {type: media_id, name: m}
        - {type: click, name: six, key: V1}
    - {name: a, key: V1}
    - {name: b, type: view, url: "https://x"}
  conditional:
    - button: [{type: click, name: c, key: V1}]
      matchrule: {}
    - button: []
      matchrule: {sex: 1}
    - button:
        - name: deep
          sub_button:
            - name: deeper
              sub_button: [{type: click, name: z, key: V1}]
      matchrule: {tag_id: "2"}
    - button: [{type: click, name: k, key: ` + strings.Repeat("k", 129) + `}]
      matchrule: {language: en}
    - button: [{type: click, name: s, key: V1, sub_button: [{type: view, name: v, url: "https://x"}]}]
      matchrule: {language: en}
  bogus: 1
`
	want := []string{
		`m.yaml:7:27: menu.button[0].name: "今日歌曲今日歌曲" is 24 bytes: WeChat takes at most 16 bytes at the top level (5 Chinese characters) and answers 40018`,
		`m.yaml:9:13: menu.button[1].type: a button with sub_button has only a name: remove type, or the sub_button`,
		`m.yaml:11:39: menu.button[1].sub_button[0].url: "example.com" is not a web address`,
		`m.yaml:12:18: menu.button[1].sub_button[1].type: unknown button type "clik" (WeChat answers 40024); did you mean click?`,
		`m.yaml:13:11: menu.button[1].sub_button[2]: a miniprogram button needs appid`,
		`m.yaml:13:11: menu.button[1].sub_button[2]: a miniprogram button needs pagepath`,
		`m.yaml:14:31: menu.button[1].sub_button[3].name: a button needs a name`,
		`m.yaml:15:11: menu.button[1].sub_button[4]: a media_id button needs media_id`,
		`m.yaml:16:11: menu.button[1].sub_button[5]: a button has at most 5 sub-buttons, this is the 6th (WeChat answers 40023)`,
		`m.yaml:17:7: menu.button[2]: a button needs a type (click, view,`,
		`m.yaml:18:7: menu.button[3]: a menu has at most 3 buttons, this is the 4th (WeChat answers 40016)`,
		`m.yaml:21:18: menu.conditional[0].matchrule: a conditional menu needs a matchrule`,
		`m.yaml:22:15: menu.conditional[1].button: a menu needs 1 to 3 buttons`,
		`m.yaml:28:27: menu.conditional[2].button[0].sub_button[0].sub_button: a sub-button cannot have sub_button`,
		`m.yaml:30:44: menu.conditional[3].button[0].key: the key is 129 bytes: WeChat takes at most 128 and answers 40019`,
		`m.yaml:32:23: menu.conditional[4].button[0].type: a button with sub_button has only a name`,
		`m.yaml:32:44: menu.conditional[4].button[0].key: a button with sub_button has only a name: move key to a sub-button`,
		`m.yaml:34:3: menu: unknown key "bogus"; known keys: button, conditional`,
	}
	_, err := Parse("m.yaml", []byte(src))
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("Parse: %v, want a *LoadError", err)
	}
	if len(le.Problems) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(le.Problems), len(want), le)
	}
	for i, p := range le.Problems {
		if i < len(want) && !strings.HasPrefix(p.String(), want[i]) {
			t.Errorf("problem %d:\n got %s\nwant %s…", i, p, want[i])
		}
	}
}

// TestMenuWarnings: a CLICK key no rule answers, and a CLICK rule whose
// key no button sends, are warnings; the file loads.
func TestMenuWarnings(t *testing.T) {
	const src = `rules:
  - name: music
    match: {event: CLICK, event_key: [V1, NOPE]}
    reply: [{text: hi}]
  - name: single
    match: {event: click, event_key: GONE}
  - name: scans
    match: {event: scancode_push, event_key: NOT_A_CLICK_KEY}
menu:
  button:
    - {type: click, name: 歌曲, key: V1}
    - name: 更多
      sub_button:
        - {type: click, name: unanswered, key: V2}
        - {type: scancode_push, name: scan, key: S}
  conditional:
    - button: [{type: click, name: c, key: GONE}]
      matchrule: {sex: "1"}
`
	s := mustParse(t, src)
	want := []string{
		`m.yaml:3:43: warning: rules[0].match.event_key[1]: no click button of the menu has the key "NOPE": the rule never matches a tap`,
		`m.yaml:14:48: warning: menu.button[1].sub_button[0].key: no rule answers the button "unanswered": a tap on it gets no reply; answer it with a rule that has ` + "`match: {event: CLICK, event_key: V2}`",
	}
	got := s.Warnings()
	if len(got) != len(want) {
		t.Fatalf("warnings %v, want %d", got, len(want))
	}
	for i, w := range got {
		if s := strings.Replace(w.String(), w.File, "m.yaml", 1); s != want[i] {
			t.Errorf("warning %d:\n got %s\nwant %s", i, s, want[i])
		}
	}
	m := s.Menu()
	if m == nil || len(m.Default.Button) != 2 || len(m.Conditional) != 1 || m.Conditional[0].MatchRule.Sex != "1" {
		t.Fatalf("Menu() = %+v", m)
	}

	// Without a menu, CLICK rules warn of nothing: the menu may be the
	// MP console's.
	if w := mustParse(t, "rules:\n  - {name: a, match: {event: CLICK, event_key: X}, reply: [{text: hi}]}\n").Warnings(); len(w) != 0 {
		t.Errorf("no menu: warnings %v", w)
	}
}

// TestLoadMenu: menu push's loader takes a file with only `menu:`, which
// Load refuses, and refuses a file with no menu problems but others.
func TestLoadMenu(t *testing.T) {
	dir := t.TempDir()
	only := filepath.Join(dir, "menu.yaml")
	if err := os.WriteFile(only, []byte("menu:\n  button:\n    - {type: view, name: 官网, url: \"https://example.com\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, warnings, err := LoadMenu(only)
	if err != nil || len(warnings) != 0 {
		t.Fatalf("LoadMenu: %v, warnings %v", err, warnings)
	}
	if want := (wechat.MenuButton{Type: "view", Name: "官网", URL: "https://example.com"}); len(m.Default.Button) != 1 || m.Default.Button[0].Name != want.Name || m.Default.Button[0].URL != want.URL {
		t.Errorf("menu %+v", m)
	}
	if _, err := Load(only); err == nil {
		t.Error("Load takes a file with only a menu: it answers nothing")
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("rules:\n  - {name: a, match: {evnt: CLICK}}\nmenu:\n  button: [{type: view, name: x, url: \"https://x\"}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadMenu(bad); err == nil {
		t.Error("LoadMenu takes a file with an invalid rule")
	}
	if _, err := Parse("m.yaml", []byte("default: {reply: [{text: x}]}\nmenu:\n")); err == nil ||
		!strings.Contains(err.Error(), "m.yaml:2:6: menu: no value: give its button list, or leave menu out") {
		t.Errorf("an empty menu: %v", err)
	}
	none := filepath.Join(dir, "none.yaml")
	if err := os.WriteFile(none, []byte("default: {reply: [{text: x}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if m, _, err := LoadMenu(none); err != nil || m != nil {
		t.Errorf("no menu: %v, %v", m, err)
	}
}
