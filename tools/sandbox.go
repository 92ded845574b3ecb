package tools

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/rules"
	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// The sandbox's built-in account. Nothing leaves the machine: the server
// listens on loopback and calls a fake WeChat API in the same process.
const (
	SandboxToken  = "sandboxtoken"
	SandboxOpenID = "oSANDBOX_user_0001"
	sandboxGhID   = "gh_sandbox00001"
)

// How long the sandbox waits: for the server to come up, and for the
// replies to one line (sent after the retries of a slow rule, if any).
const (
	startTimeout = 15 * time.Second
	replyTimeout = 40 * time.Second
)

// SandboxServer is what the sandbox runs the server with: its built-in
// credentials, the fake API's URL, and where to hand over the Sender.
type SandboxServer struct {
	Token     string
	AppID     string
	AppSecret string
	APIBase   string

	// Watch must be called by the ServeFunc with the server's Sender
	// before it serves. The sandbox knows the replies to a line are all
	// out when every message the Sender accepted has been delivered or
	// has failed; a ServeFunc that does not call it makes Sandbox fail at
	// start.
	Watch func(SenderStats)

	// Reloaded and Decided are for the ServeFunc to call, so that the
	// sandbox can say what the rules did. Reloaded takes what each reload
	// of the rules file came to (rules.Engine.ReportReloads takes it as
	// it is): the sandbox says that an edit applied, or shows every
	// problem of one that was refused. Decided takes, before the callback
	// is answered, the rules that answered a message from openid, in file
	// order ("default" for the default reply; none when nothing matched),
	// for /rules on.
	Reloaded func(rules.ReloadResult)
	Decided  func(openid string, rules []string)
}

// SenderStats is what the sandbox watches of the server's sending side;
// *delivery.Engine is one.
type SenderStats interface {
	Stats() delivery.Stats
}

// ServeFunc runs the real server on ln with s's settings (and the rules
// and options the caller chose), handing its Sender to s.Watch, until ctx
// is done. It returns early, with the reason, when the server cannot
// start, as with an invalid rules file.
// main passes its own wiring, so the sandbox runs exactly what serve runs.
type ServeFunc func(ctx context.Context, ln net.Listener, s SandboxServer) error

// SandboxOptions configures Sandbox. Serve, In and Out are required.
type SandboxOptions struct {
	Serve     ServeFunc
	RulesPath string // named in the banner
	In        io.Reader
	Out       io.Writer

	// Echo prints each line read after the prompt, for input that is not
	// typed at a terminal (a script, a test), so the output reads as a
	// conversation. Without it the prompt is printed before each read.
	Echo bool

	OpenID string // the user the person chats as; SandboxOpenID when empty

	// ShowRules shows which rules answered each line from the start
	// (-show-rule); /rules on|off toggles it.
	ShowRules bool

	// ReplyTimeout is how long the replies to one line may take before
	// the next line is read; zero means 40s, past a slow rule's retries.
	ReplyTimeout time.Duration
}

// Sandbox runs the server against a fake WeChat API and lets a person chat
// with it as a WeChat user: each line of In is a message or a command, and
// Out shows what the user would see. It returns nil at /quit or the end of
// In, and an error when the server cannot start or does not hand over its
// Sender (see SandboxServer.Watch).
func Sandbox(ctx context.Context, o SandboxOptions) error {
	if o.Serve == nil || o.In == nil || o.Out == nil {
		return errors.New("sandbox: Serve, In and Out are required")
	}
	if o.OpenID == "" {
		o.OpenID = SandboxOpenID
	}
	if o.ReplyTimeout <= 0 {
		o.ReplyTimeout = replyTimeout
	}
	box := newInbox()
	fake := wechattest.NewServer(wechattest.WithOnReceive(box.add))
	defer fake.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	con := newConsole(o.Out, o.Echo)
	decided := &decisions{openid: o.OpenID}
	var watched struct {
		mu    sync.Mutex
		stats SenderStats
	}
	srv := SandboxServer{
		Token:     SandboxToken,
		AppID:     fake.AppID,
		AppSecret: fake.AppSecret,
		APIBase:   fake.URL,
		Watch: func(st SenderStats) {
			watched.mu.Lock()
			watched.stats = st
			watched.mu.Unlock()
		},
		Reloaded: func(r rules.ReloadResult) { con.notice(reloadNotice(r, o.RulesPath)...) },
		Decided:  decided.add,
	}
	serveCtx, stop := context.WithCancel(ctx)
	var serveErr error
	served := make(chan struct{}) // closed when Serve has returned serveErr
	go func() {
		defer close(served)
		serveErr = o.Serve(serveCtx, ln, srv)
		ln.Close() // a Serve that failed before serving leaves it open
	}()
	base := "http://" + ln.Addr().String()
	defer func() {
		stop()
		<-served
	}()
	defer con.close() // before the server stops: what it says then is not shown
	if err := waitReady(ctx, base, served, &serveErr); err != nil {
		return err
	}

	// Watch is called before the server serves, so by now it has been or
	// never will be; without it no line could be known to be answered.
	watched.mu.Lock()
	stats := watched.stats
	watched.mu.Unlock()
	if stats == nil {
		return errors.New("sandbox: the server did not hand over its Sender (SandboxServer.Watch was not called)")
	}
	s := &session{
		out:          o.Out,
		con:          con,
		decided:      decided,
		showRules:    o.ShowRules,
		openid:       o.OpenID,
		box:          box,
		stats:        stats,
		cb:           &Callback{URL: base + "/wechat", Token: SandboxToken, Client: &http.Client{Timeout: defaultTimeout}},
		nextID:       24000000000000001,
		replyTimeout: o.ReplyTimeout,
		rulesPath:    o.RulesPath,
	}
	file := o.RulesPath
	if file == "" {
		file = "the rules file"
	}
	fmt.Fprintf(o.Out, "wxreply sandbox: you are WeChat user %s, chatting with %s.\n", o.OpenID, file)
	fmt.Fprintln(o.Out, "Type a message, or /help for the events you can send. Edits to the rules apply live; /quit or Ctrl-D ends.")
	return s.loop(ctx, o.In, o.Echo)
}

// session is one person chatting.
type session struct {
	out    io.Writer // written while con is answering, or through con
	con    *console
	openid string
	box    *inbox
	stats  SenderStats // the server's Sender, handed over by Watch
	cb     *Callback

	nextID       int64                // MsgId of the next user message
	lastCreate   int64                // CreateTime of the last callback, see createTime
	menu         []wechat.MsgMenuItem // the last msgmenu shown, for numbered choices
	replyTimeout time.Duration        // how long one line's replies may take
	rulesPath    string               // the rules file, whose menu: /menu and /tap read

	decided   *decisions // what the rules decided, as the server reports it
	showRules bool       // /rules on
	answered  bool       // something showed for the line being answered
}

// loop reads lines until /quit, the end of in, or ctx.
func (s *session) loop(ctx context.Context, in io.Reader, echo bool) error {
	r := bufio.NewReader(in)
	for {
		s.con.idle()
		raw, size, err := readLine(r)
		s.con.answering()
		if err != nil {
			if !echo {
				fmt.Fprintln(s.out)
			}
			if err == io.EOF {
				return nil
			}
			return err
		}
		if size > maxLine {
			if echo {
				fmt.Fprintf(s.out, "> %s…\n", strings.ToValidUTF8(raw[:80], ""))
			}
			fmt.Fprintf(s.out, "[a line of %d bytes was not sent: the sandbox takes lines up to %d]\n", size, maxLine)
			continue
		}
		line := strings.TrimSpace(raw)
		if echo {
			fmt.Fprintf(s.out, "> %s\n", line)
		}
		if line == "" {
			continue
		}
		if quit := s.handle(ctx, line); quit {
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// handle acts on one line and reports whether it was /quit.
func (s *session) handle(ctx context.Context, line string) (quit bool) {
	if n, err := strconv.Atoi(line); err == nil && n >= 1 && n <= len(s.menu) {
		item := s.menu[n-1]
		s.send(ctx, s.textXML(item.Content, item.ID))
		return false
	}
	if !strings.HasPrefix(line, "/") {
		s.send(ctx, s.textXML(line, ""))
		return false
	}
	cmd, arg, _ := strings.Cut(line, " ")
	arg = strings.TrimSpace(arg)
	switch cmd {
	case "/help":
		fmt.Fprint(s.out, sandboxHelp)
	case "/rules":
		switch arg {
		case "on":
			s.showRules = true
			fmt.Fprintln(s.out, "[showing which rule answers each message]")
		case "off":
			s.showRules = false
			fmt.Fprintln(s.out, "[not showing which rule answers]")
		default:
			fmt.Fprintln(s.out, "usage: /rules on|off")
		}
	case "/quit", "/exit":
		return true
	case "/subscribe":
		key, ticket := "", ""
		if arg != "" {
			key, ticket = "qrscene_"+arg, "sandbox-ticket-"+arg
		}
		s.send(ctx, s.eventXML(wechat.EventSubscribe, key, ticket))
	case "/unsubscribe":
		s.send(ctx, s.eventXML(wechat.EventUnsubscribe, "", ""))
	case "/scan":
		if s.need(cmd, arg, "SCENE") {
			s.send(ctx, s.eventXML(wechat.EventScan, arg, "sandbox-ticket-"+arg))
		}
	case "/click":
		if s.need(cmd, arg, "KEY") {
			s.send(ctx, s.eventXML(wechat.EventClick, arg, ""))
		}
	case "/tap":
		s.tap(ctx, arg)
	case "/menu":
		if arg == "" {
			s.showMenu() // the rules file's custom menu
		} else {
			content := arg
			for _, it := range s.menu {
				if it.ID == arg {
					content = it.Content
				}
			}
			s.send(ctx, s.textXML(content, arg))
		}
	case "/voice":
		if s.need(cmd, arg, "TEXT") {
			s.send(ctx, s.voiceXML(arg))
		}
	default:
		fmt.Fprintf(s.out, "unknown command %s: /help lists them\n", cmd)
	}
	return false
}

const sandboxHelp = `Type a line to send it as a text message. When a menu message shows
numbered choices, type a number to tap one. Commands send events:
  /subscribe [SCENE]  follow the account (SCENE: by scanning a parametric QR code)
  /unsubscribe        unfollow
  /scan SCENE         scan a parametric QR code, already following
  /click KEY          tap a custom-menu button with this key
  /menu               list the rules file's custom menu, numbered
  /tap N | /tap N.M   tap its button N, or sub-button M of button N
  /menu ID            tap a msgmenu item by its id
  /voice TEXT         send a voice message that WeChat recognised as TEXT
  /rules on|off       show which rule answers each message, or stop showing it
  /help               this list
  /quit               leave (Ctrl-D too)
`

func (s *session) need(cmd, arg, what string) bool {
	if arg == "" {
		fmt.Fprintf(s.out, "usage: %s %s\n", cmd, what)
		return false
	}
	return true
}

// send posts one callback, shows (with /rules on) which rules answered,
// the passive reply, then every customer-service message the server sends
// in answer; "(no reply)" when there was none.
func (s *session) send(ctx context.Context, msg []byte) {
	r, err := s.cb.Post(ctx, msg)
	decided := s.decided.take()
	switch {
	case err != nil && r == nil:
		fmt.Fprintf(s.out, "[could not reach the server: %v]\n", err)
		return
	case err == nil && !r.OK():
		fmt.Fprintf(s.out, "[the server answered %s: %s]\n", r.Status, bytes.TrimSpace(r.Body))
		return
	}
	if s.showRules {
		for _, names := range decided {
			fmt.Fprintln(s.out, ruleLine(names))
		}
	}
	s.answered = false
	switch {
	case err != nil:
		fmt.Fprintf(s.out, "[unreadable reply: %v]\n", err)
		s.answered = true
	case r.Reply != nil:
		m, err := parsePassive(r.Reply)
		if err != nil {
			fmt.Fprintf(s.out, "[unreadable passive reply: %v]\n%s\n", err, r.Reply)
			s.answered = true
		} else {
			s.show(m)
		}
	}
	s.sync(ctx)
	if !s.answered {
		fmt.Fprintln(s.out, "(no reply)")
	}
}

// showReceived shows one call of the fake API as the user would see it.
func (s *session) showReceived(r wechattest.Received) {
	switch {
	case r.API == wechat.PathCustomSend && r.Custom != nil:
		s.answered = true
		if !r.OK() {
			fmt.Fprintf(s.out, "[a %s message was not delivered: WeChat answered errcode %d]\n", r.Custom.MsgType, r.ErrCode)
			return
		}
		s.show(r.Custom)
	case r.API == wechat.PathTemplateSend && r.Template != nil:
		s.answered = true
		if !r.OK() {
			fmt.Fprintf(s.out, "[a template message was not delivered: WeChat answered errcode %d]\n", r.ErrCode)
			return
		}
		writeLines(s.out, renderTemplate(r.Template))
	}
	// Uploads and the typing indicator show nothing themselves.
}

// show renders one message and remembers a msgmenu's choices.
func (s *session) show(m *wechat.CustomMessage) {
	s.answered = true
	writeLines(s.out, renderCustom(m))
	if m.MsgMenu != nil && m.MsgType == wechat.MsgTypeMsgMenu {
		s.menu = m.MsgMenu.List
	}
}
