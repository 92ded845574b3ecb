package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/wxreply/wxreply/rules"
	"github.com/wxreply/wxreply/wechat"
	"gopkg.in/yaml.v3"
)

// menuCommand is `wxreply menu push [FILE]` and `wxreply menu pull`: the
// rules file's `menu:` to WeChat, and WeChat's menu back as `menu:`.
func menuCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	const usage = "usage: wxreply menu push [flags] [FILE]   create the rules file's menu: on WeChat\n       wxreply menu pull [flags]          print the account's menu as a menu: block\n\nFILE defaults to $WXREPLY_RULES or rules.yaml. Run 'wxreply menu push -h' for the flags."
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "push", "pull":
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "wxreply menu: unknown command %q\n\n%s\n", sub, usage)
		return 2
	}
	var c config
	fs := commandFlagSet("menu "+sub, &c, getenv, stderr, "appid", "appsecret", "api-base", "rules")
	fs.Usage = func() {
		if sub == "push" {
			fmt.Fprintln(stderr, "usage: wxreply menu push [FILE]\n\nValidates the rules file's menu: (default: -rules) and creates it on WeChat\n(menu/create, then menu/addconditional for each conditional menu). Exit 0\nwhen WeChat accepts it, 1 with its errcode otherwise, 1 with FILE:LINE:COL\nlines when the file is invalid (nothing is sent).\n\nflags:")
		} else {
			fmt.Fprintln(stderr, "usage: wxreply menu pull\n\nPrints the account's current menu as a menu: block that menu push accepts.\n\nflags:")
		}
		fs.PrintDefaults()
	}
	if err := c.parse(fs, args); err != nil {
		return parseFailed(err)
	}
	usageErr := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "wxreply menu %s: "+format+"\n", append([]any{sub}, args...)...)
		return 2
	}
	path := c.rulesPath
	switch {
	case sub == "pull" && fs.NArg() > 0:
		return usageErr("unexpected argument %q", fs.Arg(0))
	case fs.NArg() > 1:
		return usageErr("one FILE, got %d arguments (flags go before it)", fs.NArg())
	case fs.NArg() == 1:
		path = fs.Arg(0)
	}
	var menu *rules.Menu
	if sub == "push" {
		// Validated before the credentials are asked for: an invalid file
		// is reported the same with or without them.
		m, warnings, err := rules.LoadMenu(path)
		var le *rules.LoadError
		var pe *iofs.PathError
		switch {
		case errors.As(err, &le):
			for _, p := range le.Problems {
				fmt.Fprintln(stderr, p.String())
			}
			fmt.Fprintf(stderr, "wxreply menu push: %s is invalid: nothing was sent\n", path)
			return 1
		case errors.As(err, &pe):
			fmt.Fprintf(stderr, "wxreply menu push: %s: %v\n", path, pe.Err)
			return 1
		case err != nil:
			fmt.Fprintln(stderr, "wxreply menu push:", err)
			return 1
		case m == nil:
			fmt.Fprintf(stderr, "wxreply menu push: %s has no menu: nothing was sent\n", path)
			return 1
		}
		for _, w := range warnings {
			fmt.Fprintln(stderr, w.String())
		}
		menu = m
	}
	if err := c.envProblem(fs); err != nil {
		return usageErr("%v", err)
	}
	if c.appID == "" || c.appSecret == "" {
		return usageErr("WECHAT_APPID and WECHAT_APPSECRET (or -appid, -appsecret) are required: the menu is the account's")
	}
	if u, err := url.Parse(c.apiBase); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageErr("WECHAT_API_BASE %q is not an http or https URL", c.apiBase)
	}
	client := wechat.NewClient(wechat.ClientOptions{BaseURL: c.apiBase, AppID: c.appID, AppSecret: c.appSecret,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	defer client.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if sub == "push" {
		err = pushMenu(ctx, client, menu, stdout)
	} else {
		err = pullMenu(ctx, client, stdout)
	}
	if err != nil {
		var ae *wechat.APIError
		if errors.As(err, &ae) {
			var se *stepError
			step := ""
			if errors.As(err, &se) {
				step = se.step + ": "
			}
			fmt.Fprintf(stderr, "wxreply menu %s: %sWeChat refused: errcode %d: %s\n", sub, step, ae.Code, ae.Message)
		} else {
			fmt.Fprintf(stderr, "wxreply menu %s: %v\n", sub, err)
		}
		return 1
	}
	return 0
}

// pushMenu creates m's default menu, then adds its conditional menus.
func pushMenu(ctx context.Context, client *wechat.Client, m *rules.Menu, stdout io.Writer) error {
	if err := client.CreateMenu(ctx, &m.Default); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "menu created: %d buttons\n", len(m.Default.Button))
	for i := range m.Conditional {
		id, err := client.AddConditionalMenu(ctx, &m.Conditional[i])
		if err != nil {
			return &stepError{fmt.Sprintf("conditional menu %d (the default menu was created)", i+1), err}
		}
		fmt.Fprintf(stdout, "conditional menu %d added: menuid %s\n", i+1, id)
	}
	return nil
}

// stepError names the call of several that failed.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// menuBlock is `menu:` as pull prints it.
type menuBlock struct {
	Menu struct {
		Button      []wechat.MenuButton      `yaml:"button"`
		Conditional []wechat.ConditionalMenu `yaml:"conditional,omitempty"`
	} `yaml:"menu"`
}

// pullMenu prints the account's menu: menu/get's, with its conditional
// menus, or, for a menu made in the MP console (menu/get answers 46003),
// get_current_selfmenu_info's.
func pullMenu(ctx context.Context, client *wechat.Client, stdout io.Writer) error {
	var out menuBlock
	cur, err := client.GetMenu(ctx)
	var ae *wechat.APIError
	switch {
	case err == nil:
		out.Menu.Button, out.Menu.Conditional = cur.Menu.Button, cur.Conditional
	case errors.As(err, &ae) && ae.Code == 46003:
		info, err := client.GetSelfMenuInfo(ctx)
		if err != nil {
			return err
		}
		if info.IsMenuOpen == 0 || len(info.Info.Button) == 0 {
			return errors.New("the account has no menu")
		}
		out.Menu.Button = info.Menu().Button
		for _, b := range leafButtons(out.Menu.Button) {
			if _, ok := wechat.ButtonField(b.Type); !ok {
				return fmt.Errorf("the button %q has the type %q, which only the MP console makes: menu/create cannot take it", b.Name, b.Type)
			}
		}
	default:
		return err
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&out); err != nil {
		return err
	}
	_ = enc.Close()
	_, err = stdout.Write(b.Bytes())
	return err
}

func leafButtons(list []wechat.MenuButton) []wechat.MenuButton {
	var out []wechat.MenuButton
	for _, b := range list {
		if b.SubButton != nil {
			out = append(out, b.SubButton...)
		} else {
			out = append(out, b)
		}
	}
	return out
}
