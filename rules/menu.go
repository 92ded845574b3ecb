package rules

import (
	"fmt"
	"slices"
	"strings"

	"github.com/wxreply/wxreply/wechat"
)

// The custom menu lives in rules.yaml beside the rules that answer its
// CLICK keys: `menu:` is menu/create's body written in YAML, and its
// `conditional:` list holds addconditional's bodies. This file checks it
// the way menu/create would, with positions, and warns of CLICK keys no
// rule answers and of CLICK rules whose key no button sends.

// menuSpec is `menu:` as written.
type menuSpec struct {
	Button      []wechat.MenuButton      `yaml:"button"`
	Conditional []wechat.ConditionalMenu `yaml:"conditional"`
}

// Menu is a rules file's custom menu: what `wxreply menu push` creates.
type Menu struct {
	Default     wechat.Menu              // menu/create's body
	Conditional []wechat.ConditionalMenu // one addconditional body each
}

// Menu returns the file's custom menu, nil when it has no `menu:`.
func (s *Set) Menu() *Menu { return s.menu }

const menuName = "menu"

// compileMenu checks the menu as menu/create and addconditional would and
// returns it, nil when the file has none.
func (c *compiler) compileMenu(spec *menuSpec) *Menu {
	if spec == nil || c.broken(menuName) {
		return nil
	}
	c.checkButtons(joinPath(menuName, "button"), spec.Button)
	for i := range spec.Conditional {
		at := indexPath(joinPath(menuName, "conditional"), i)
		if c.broken(at) {
			continue
		}
		cm := &spec.Conditional[i]
		c.checkButtons(joinPath(at, "button"), cm.Button)
		if cm.MatchRule.IsZero() && !c.corruptAt(joinPath(at, "matchrule")) {
			c.add(c.node(joinPath(at, "matchrule")), joinPath(at, "matchrule"), false,
				"a conditional menu needs a matchrule with at least one of tag_id, sex, country, province, city, client_platform_type, language")
		}
	}
	return &Menu{Default: wechat.Menu{Button: spec.Button}, Conditional: spec.Conditional}
}

// checkButtons checks a menu's top-level buttons at path.
func (c *compiler) checkButtons(path string, buttons []wechat.MenuButton) {
	if c.corruptAt(path) {
		return
	}
	switch {
	case len(buttons) == 0:
		c.add(c.node(path), path, false, "a menu needs 1 to %d buttons", wechat.MaxMenuButtons)
	case len(buttons) > wechat.MaxMenuButtons:
		at := indexPath(path, wechat.MaxMenuButtons)
		c.add(c.node(at), at, false, "a menu has at most %d buttons, this is the %dth (WeChat answers 40016)",
			wechat.MaxMenuButtons, wechat.MaxMenuButtons+1)
	}
	for i, b := range buttons {
		at := indexPath(path, i)
		c.checkName(at, b.Name, wechat.MaxButtonNameBytes, "at the top level", 40018)
		if b.SubButton == nil {
			c.checkLeaf(at, b, 40017, 40019, 40020)
			continue
		}
		if b.Type != "" {
			c.add(c.node(joinPath(at, "type")), joinPath(at, "type"), false,
				"a button with sub_button has only a name: remove type, or the sub_button")
		}
		for _, f := range []struct{ key, v string }{
			{"key", b.Key}, {"url", b.URL}, {"appid", b.AppID}, {"pagepath", b.PagePath},
			{"media_id", b.MediaID}, {"article_id", b.ArticleID},
		} {
			if f.v != "" {
				c.add(c.node(joinPath(at, f.key)), joinPath(at, f.key), false,
					"a button with sub_button has only a name: move %s to a sub-button", f.key)
			}
		}
		subs := joinPath(at, "sub_button")
		switch {
		case len(b.SubButton) == 0:
			c.add(c.node(subs), subs, false, "an empty sub_button: give 1 to %d sub-buttons, or give the button a type", wechat.MaxMenuSubButtons)
		case len(b.SubButton) > wechat.MaxMenuSubButtons:
			over := indexPath(subs, wechat.MaxMenuSubButtons)
			c.add(c.node(over), over, false, "a button has at most %d sub-buttons, this is the %dth (WeChat answers 40023)",
				wechat.MaxMenuSubButtons, wechat.MaxMenuSubButtons+1)
		}
		for j, sb := range b.SubButton {
			sat := indexPath(subs, j)
			c.checkName(sat, sb.Name, wechat.MaxSubNameBytes, "in a sub-menu", 40025)
			if sb.SubButton != nil {
				c.add(c.node(joinPath(sat, "sub_button")), joinPath(sat, "sub_button"), false,
					"a sub-button cannot have sub_button: menus are two levels deep")
				continue
			}
			c.checkLeaf(sat, sb, 40024, 40026, 40027)
		}
	}
}

// checkName checks a button's name against its level's byte limit.
func (c *compiler) checkName(at, name string, limit int, level string, errcode int) {
	path := joinPath(at, "name")
	if c.corruptAt(path) {
		return
	}
	switch n := len(name); {
	case strings.TrimSpace(name) == "":
		c.add(c.node(path), path, false, "a button needs a name")
	case n > limit:
		c.add(c.node(path), path, false, "%q is %d bytes: WeChat takes at most %d bytes %s (%d Chinese characters) and answers %d",
			name, n, limit, level, limit/3, errcode)
	}
}

// checkLeaf checks a button without sub-buttons: its type and the fields
// the type needs, with the errcodes of its level for the messages.
func (c *compiler) checkLeaf(at string, b wechat.MenuButton, badType, badKey, badURL int) {
	typePath := joinPath(at, "type")
	if c.corruptAt(typePath) {
		return
	}
	field, ok := wechat.ButtonField(b.Type)
	switch {
	case b.Type == "":
		c.add(c.node(at), at, false, "a button needs a type (%s), or a sub_button list", strings.Join(wechat.ButtonTypes, ", "))
		return
	case !ok:
		hint := ""
		if near := nearest(b.Type, wechat.ButtonTypes); near != "" {
			hint = fmt.Sprintf("did you mean %s? ", near)
		}
		c.add(c.node(typePath), typePath, false, "unknown button type %q (WeChat answers %d); %swant one of %s",
			b.Type, badType, hint, strings.Join(wechat.ButtonTypes, ", "))
		return
	}
	need := func(key, v string) bool {
		if v != "" || c.corruptAt(joinPath(at, key)) {
			return v != ""
		}
		c.add(c.node(at), at, false, "a %s button needs %s", b.Type, key)
		return false
	}
	switch field {
	case "key":
		if need("key", b.Key) && len(b.Key) > wechat.MaxButtonKeyBytes {
			c.add(c.node(joinPath(at, "key")), joinPath(at, "key"), false,
				"the key is %d bytes: WeChat takes at most %d and answers %d", len(b.Key), wechat.MaxButtonKeyBytes, badKey)
		}
	case "url":
		if need("url", b.URL) {
			up := joinPath(at, "url")
			switch {
			case len(b.URL) > wechat.MaxButtonURLBytes:
				c.add(c.node(up), up, false, "the url is %d bytes: WeChat takes at most %d and answers %d",
					len(b.URL), wechat.MaxButtonURLBytes, badURL)
			case !strings.HasPrefix(b.URL, "http://") && !strings.HasPrefix(b.URL, "https://"):
				c.add(c.node(up), up, false, "%q is not a web address: give an http:// or https:// URL", b.URL)
			}
		}
		if b.Type == wechat.ButtonMiniProgram {
			need("appid", b.AppID)
			need("pagepath", b.PagePath)
		}
	case "media_id":
		need("media_id", b.MediaID)
	case "article_id":
		need("article_id", b.ArticleID)
	}
}

// warnMenu warns of the CLICK keys of the menu that no rule answers, and
// of the rules matching a CLICK key that no button of the menu sends. A
// file without a menu warns of neither: its menu may come from the MP
// console.
func (c *compiler) warnMenu(s *Set, specs []ruleSpec) {
	if s.menu == nil {
		return
	}
	keys := make(map[string]bool)
	buttonPaths := func(path string, list []wechat.MenuButton) {
		for i, b := range list {
			at := indexPath(path, i)
			if b.SubButton != nil {
				for j, sb := range b.SubButton {
					c.warnClick(s, indexPath(joinPath(at, "sub_button"), j), sb, keys)
				}
				continue
			}
			c.warnClick(s, at, b, keys)
		}
	}
	buttonPaths(joinPath(menuName, "button"), s.menu.Default.Button)
	for i, cm := range s.menu.Conditional {
		buttonPaths(joinPath(indexPath(joinPath(menuName, "conditional"), i), "button"), cm.Button)
	}
	for i := range specs {
		m := specs[i].Match
		if m == nil || !slices.ContainsFunc(m.Event, func(e string) bool {
			return strings.EqualFold(strings.TrimSpace(e), wechat.EventClick)
		}) {
			continue
		}
		path := joinPath(joinPath(indexPath("rules", i), "match"), "event_key")
		for j, k := range m.EventKey {
			k = strings.TrimSpace(k)
			if k == "" || keys[k] {
				continue
			}
			at := c.elem(path, j)
			c.warn(c.node(at), at, "no click button of the menu has the key %q: the rule never matches a tap", k)
		}
	}
}

// warnClick records a click button's key in keys and warns when no rule
// answers a tap on it.
func (c *compiler) warnClick(s *Set, at string, b wechat.MenuButton, keys map[string]bool) {
	if b.Type != wechat.ButtonClick || b.Key == "" {
		return
	}
	keys[b.Key] = true
	tap := &wechat.Message{MsgType: wechat.MsgTypeEvent, Event: wechat.EventClick, EventKey: b.Key}
	in := newInput(tap)
	if len(s.match(&in, nil)) > 0 {
		return
	}
	kp := joinPath(at, "key")
	c.warn(c.node(kp), kp, "no rule answers the button %q: a tap on it gets no reply; answer it with a rule that has `match: {event: CLICK, event_key: %s}`",
		b.Name, b.Key)
}

// LoadMenu reads the rules file at path for its menu, as `wxreply menu
// push` does: the whole file is checked, and a file holding only `menu:`
// (what `menu pull` prints) is valid too. It returns the menu, nil when the
// file has none, with the file's warnings; a file with problems gives a
// *LoadError as Load does.
func LoadMenu(path string) (*Menu, []Problem, error) {
	o := buildOptions(nil)
	o.menuOnly = true
	s, err := load(path, o)
	if err != nil {
		return nil, nil, err
	}
	return s.menu, s.Warnings(), nil
}
