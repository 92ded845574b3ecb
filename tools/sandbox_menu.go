package tools

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/wxreply/wxreply/rules"
	"github.com/wxreply/wxreply/wechat"
)

// The rules file's custom menu in the sandbox: /menu lists its buttons
// numbered, /tap N or /tap N.M taps one, sending the event WeChat sends
// for that button. The menu is read from the file at each command, so an
// edit shows at once.

// loadMenu returns the default menu of the rules file, or prints why
// there is none.
func (s *session) loadMenu() *wechat.Menu {
	m, _, err := rules.LoadMenu(s.rulesPath)
	var le *rules.LoadError
	switch {
	case errors.As(err, &le):
		fmt.Fprintln(s.out, "[the rules file is invalid, so is its menu:]")
		for _, p := range le.Problems {
			fmt.Fprintln(s.out, "  "+p.String())
		}
		return nil
	case err != nil:
		fmt.Fprintf(s.out, "[cannot read the menu: %v]\n", err)
		return nil
	case m == nil:
		fmt.Fprintf(s.out, "[%s has no menu:; /click KEY taps a button by its key]\n", s.rulesPath)
		return nil
	}
	return &m.Default
}

// showMenu lists the menu's buttons, sub-buttons under their parent.
func (s *session) showMenu() {
	m := s.loadMenu()
	if m == nil {
		return
	}
	fmt.Fprintln(s.out, "[custom menu: /tap N or /tap N.M taps a button]")
	for i, b := range m.Button {
		if b.SubButton != nil {
			fmt.Fprintf(s.out, "  %d. %s ▸\n", i+1, b.Name)
			for j, sb := range b.SubButton {
				fmt.Fprintf(s.out, "     %d.%d %s  %s\n", i+1, j+1, sb.Name, describeButton(sb))
			}
			continue
		}
		fmt.Fprintf(s.out, "  %d. %s  %s\n", i+1, b.Name, describeButton(b))
	}
}

// describeButton says what a tap on b does.
func describeButton(b wechat.MenuButton) string {
	switch b.Type {
	case wechat.ButtonView:
		return "(view " + b.URL + ")"
	case wechat.ButtonMiniProgram:
		return "(miniprogram " + b.AppID + " " + b.PagePath + ")"
	case wechat.ButtonMediaID, wechat.ButtonViewLimited:
		return "(" + b.Type + " " + b.MediaID + ")"
	case wechat.ButtonArticleID, wechat.ButtonArticleViewLimited:
		return "(" + b.Type + " " + b.ArticleID + ")"
	}
	return "(" + b.Type + " " + b.Key + ")"
}

// tap taps the button numbered arg: N, or N.M for a sub-button.
func (s *session) tap(ctx context.Context, arg string) {
	if arg == "" {
		fmt.Fprintln(s.out, "usage: /tap N or /tap N.M (/menu lists the buttons)")
		return
	}
	m := s.loadMenu()
	if m == nil {
		return
	}
	top, sub, hasSub := strings.Cut(arg, ".")
	i, err := strconv.Atoi(top)
	if err != nil || i < 1 || i > len(m.Button) {
		fmt.Fprintf(s.out, "[no button %s: /menu lists them]\n", arg)
		return
	}
	b := m.Button[i-1]
	switch {
	case b.SubButton != nil && !hasSub:
		fmt.Fprintf(s.out, "[%s opens a sub-menu: /tap %d.M taps one of its %d buttons]\n", b.Name, i, len(b.SubButton))
		return
	case b.SubButton == nil && hasSub:
		fmt.Fprintf(s.out, "[no button %s: %s has no sub-menu]\n", arg, b.Name)
		return
	case hasSub:
		j, err := strconv.Atoi(sub)
		if err != nil || j < 1 || j > len(b.SubButton) {
			fmt.Fprintf(s.out, "[no button %s: /menu lists them]\n", arg)
			return
		}
		b = b.SubButton[j-1]
	}
	fmt.Fprintf(s.out, "[tapped %s]\n", b.Name)
	switch b.Type {
	case wechat.ButtonClick:
		s.send(ctx, s.eventXML(wechat.EventClick, b.Key, ""))
	case wechat.ButtonView:
		s.send(ctx, s.eventXML(wechat.EventView, b.URL, ""))
	case wechat.ButtonMiniProgram:
		s.send(ctx, s.eventXML(wechat.EventViewMiniProgram, b.PagePath, ""))
	case wechat.ButtonMediaID, wechat.ButtonViewLimited, wechat.ButtonArticleID, wechat.ButtonArticleViewLimited:
		fmt.Fprintf(s.out, "[WeChat shows the %s itself: no event reaches the server]\n", strings.TrimSuffix(b.Type, "_id"))
	default: // scancode_*, pic_*, location_select: the event of the type's name
		s.send(ctx, s.eventXML(b.Type, b.Key, ""))
	}
}
