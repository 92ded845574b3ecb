package tools

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/handlers"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
)

// scripted is a Responder with fixed answers, so that the sandbox's
// display of every message type is tested apart from the rule engine
// (main's tests run the sandbox with the real rules.yaml).
type scripted struct {
	outbox *delivery.Engine
	mu     sync.Mutex
	got    []*wechat.Message
	// gate holds the reply to "slow" until the line "release" comes.
	gate     chan struct{}
	released sync.Once
	// pushCalls counts the requests to the push API, which the sandbox
	// has no use for.
	pushCalls atomic.Int64
	// decided is the sandbox's SandboxServer.Decided: Respond tells it
	// which "rules" answered, as the real server's log does.
	decided func(openid string, rules []string)
}

// slowTransport holds a send of the reply to "slow" until the gate opens.
type slowTransport struct{ gate <-chan struct{} }

func (tr slowTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		if bytes.Contains(body, []byte("slow reply")) {
			select {
			case <-tr.gate:
			case <-req.Context().Done():
				return nil, req.Context().Err()
			}
		}
	}
	return http.DefaultTransport.RoundTrip(req)
}

func text(s string) wechat.CustomMessage {
	return wechat.CustomMessage{MsgType: wechat.MsgTypeText, Text: &wechat.Text{Content: s}}
}

func (r *scripted) Respond(ctx context.Context, m *wechat.Message) ([]byte, error) {
	r.mu.Lock()
	r.got = append(r.got, m)
	r.mu.Unlock()
	var replies []wechat.CustomMessage
	var passive *wechat.CustomMessage
	var template *wechat.TemplateMessage
	switch {
	case m.BizMsgMenuID != "":
		replies = append(replies, text("chose "+m.BizMsgMenuID+": "+m.Content))
	case m.MsgType == wechat.MsgTypeVoice:
		replies = append(replies, text("heard: "+m.Recognition))
	case m.IsEvent():
		switch m.Event {
		case wechat.EventSubscribe:
			replies = append(replies, text("welcome "+m.EventKey+" "+m.Ticket))
		case wechat.EventScan:
			replies = append(replies, text("scanned "+m.EventKey))
		case wechat.EventClick:
			replies = append(replies, text("clicked "+m.EventKey))
		}
	case m.Content == "passive":
		p := text("a passive reply")
		passive = &p
	case m.Content == "passive news":
		passive = &wechat.CustomMessage{MsgType: wechat.MsgTypeNews, News: &wechat.News{Articles: []wechat.Article{{Title: "Passive card", Description: "in the response", URL: "https://example.com/p"}}}}
	case m.Content == "link":
		replies = append(replies, text("see <a href=\"https://example.com/help\">the help</a>\nsecond line"))
	case m.Content == "menu":
		replies = append(replies, wechat.CustomMessage{MsgType: wechat.MsgTypeMsgMenu, MsgMenu: &wechat.MsgMenu{
			HeadContent: "Happy?", List: []wechat.MsgMenuItem{{ID: "101", Content: "yes"}, {ID: "102", Content: "no"}}, TailContent: "thanks"}})
	case m.Content == "media":
		replies = append(replies,
			wechat.CustomMessage{MsgType: wechat.MsgTypeImage, Image: &wechat.Media{MediaID: "IMG"}},
			wechat.CustomMessage{MsgType: wechat.MsgTypeVoice, Voice: &wechat.Media{MediaID: "VOX"}},
			wechat.CustomMessage{MsgType: wechat.MsgTypeVideo, Video: &wechat.Video{MediaID: "VID", Title: "Demo", Description: "one minute"}},
			wechat.CustomMessage{MsgType: wechat.MsgTypeMusic, Music: &wechat.Music{Title: "Song", MusicURL: "https://example.com/s.mp3", HQMusicURL: "https://example.com/hq.mp3", ThumbMediaID: "TH"}},
			wechat.CustomMessage{MsgType: wechat.MsgTypeNews, News: &wechat.News{Articles: []wechat.Article{{Title: "Guide", Description: "three minutes", URL: "https://example.com/guide"}}}},
			wechat.CustomMessage{MsgType: wechat.MsgTypeMPNews, MPNews: &wechat.Media{MediaID: "MPN"}},
			wechat.CustomMessage{MsgType: wechat.MsgTypeMPNewsArticle, MPNewsArticle: &wechat.MPNewsArticle{ArticleID: "ART"}},
			wechat.CustomMessage{MsgType: wechat.MsgTypeWxCard, WxCard: &wechat.WxCard{CardID: "CARD"}},
			wechat.CustomMessage{MsgType: wechat.MsgTypeMiniProgramPage, MiniProgramPage: &wechat.MiniProgramPage{Title: "Open", AppID: "wxmini", PagePath: "pages/index", ThumbMediaID: "TH"}},
		)
	case m.Content == "slow":
		replies = append(replies, text("slow reply"))
	case m.Content == "release":
		r.released.Do(func() { close(r.gate) })
		replies = append(replies, text("released"))
	case m.Content == "two rules":
		replies = append(replies, text("you said: "+m.Content))
	case m.Content == "template":
		template = &wechat.TemplateMessage{TemplateID: "TPL", URL: "https://example.com/o",
			Data: map[string]wechat.TemplateValue{"first": {Value: "shipped"}, "remark": {Value: "soon"}}}
	default:
		replies = append(replies, text("you said: "+m.Content))
	}
	switch {
	case len(replies) == 0 && passive == nil && template == nil:
		r.decided(m.FromUserName, nil)
	case m.Content == "two rules":
		r.decided(m.FromUserName, []string{"first", "second"})
	default:
		r.decided(m.FromUserName, []string{"script"})
	}
	var out []wechat.Outgoing
	for _, rep := range replies {
		rep.ToUser = m.FromUserName
		out = append(out, wechat.Outgoing{Custom: &rep})
	}
	if template != nil {
		template.ToUser = m.FromUserName
		out = append(out, wechat.Outgoing{Template: template})
	}
	// As server.Responder records a callback.
	req := delivery.Request{Items: out}
	if m.OpensWindow() {
		req.Touch = m.FromUserName
	}
	if len(out) > 0 || passive != nil {
		req.Dedupe = m.DedupeKey()
	}
	if _, err := r.outbox.Accept(ctx, req); err != nil {
		return nil, err
	}
	if passive == nil {
		return nil, nil
	}
	return wechat.EncodeReply(m.FromUserName, m.ToUserName, time.Now().Unix(), passive)
}

func (r *scripted) messages() []*wechat.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*wechat.Message(nil), r.got...)
}

// scriptedServe wires the server as server.New does — the store, the
// outbox, the handlers — with the scripted Responder in place of the rule
// engine.
func scriptedServe(r *scripted) ServeFunc {
	r.gate = make(chan struct{})
	return func(ctx context.Context, ln net.Listener, s SandboxServer) error {
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		st, err := store.Open(store.Memory, store.Options{Logger: log})
		if err != nil {
			return err
		}
		client := wechat.NewClient(wechat.ClientOptions{BaseURL: s.APIBase, AppID: s.AppID, AppSecret: s.AppSecret, Logger: log,
			HTTPClient: &http.Client{Transport: slowTransport{r.gate}}})
		r.outbox = delivery.New(delivery.Options{
			Store:       st,
			Client:      client,
			BaseBackoff: time.Millisecond,
			PollEvery:   5 * time.Millisecond,
			Logger:      log,
		})
		s.Watch(r.outbox)
		r.decided = s.Decided
		r.outbox.Start()
		h := handlers.New(handlers.Config{
			Token:     s.Token,
			Responder: r,
			Logger:    log,
		})
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if strings.HasPrefix(req.URL.Path, "/api/") {
				r.pushCalls.Add(1)
			}
			h.ServeHTTP(w, req)
		})}
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		err = srv.Serve(ln)
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shutdownErr := r.outbox.Shutdown(sctx)
		client.Close()
		return errors.Join(shutdownErr, st.Close(), ignoreClosed(err))
	}
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// runSandbox runs a whole session over the given input and returns what
// the terminal showed.
func runSandbox(t *testing.T, serve ServeFunc, input string) string {
	t.Helper()
	return runSandboxWith(t, SandboxOptions{Serve: serve, In: strings.NewReader(input)})
}

// runSandboxWith is runSandbox with options: Serve and In are required.
func runSandboxWith(t *testing.T, o SandboxOptions) string {
	t.Helper()
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if o.RulesPath == "" {
		o.RulesPath = "scripted rules"
	}
	o.Out, o.Echo = &out, true
	err := Sandbox(ctx, o)
	if err != nil {
		t.Fatalf("Sandbox: %v\n%s", err, out.String())
	}
	return out.String()
}

// A whole session: every command and message type, each line answered
// completely before the next. The sandbox learns that a line's replies are
// out by watching the Sender, so it sends the server nothing of its own.
func TestSandboxSession(t *testing.T) {
	r := &scripted{}
	// Each step is a line typed and exactly what the terminal shows for it.
	steps := []struct{ in, want string }{
		{"hello", "< you said: hello\n"},
		{"/subscribe", "< welcome  \n"},
		{"/subscribe spring", "< welcome qrscene_spring sandbox-ticket-spring\n"},
		{"/scan summer", "< scanned summer\n"},
		{"/click V1001_TODAY_MUSIC", "< clicked V1001_TODAY_MUSIC\n"},
		{"/voice 今天天气", "< heard: 今天天气\n"},
		{"/unsubscribe", "(no reply)\n"},
		{"passive", "< a passive reply\n"},
		{"passive news", "< [link card] Passive card\n  in the response\n  https://example.com/p\n"},
		{"link", "< see the help <https://example.com/help>\n  second line\n"},
		{"menu", "< Happy?\n    1. yes\n    2. no\n  thanks\n  (type a number to choose)\n"},
		{"2", "< chose 102: no\n"},
		{"3", "< you said: 3\n"},
		{"/menu 101", "< chose 101: yes\n"},
		{"/menu 999", "< chose 999: 999\n"},
		{"media", "< [image] media_id IMG\n" +
			"< [voice message] media_id VOX\n" +
			"< [video] Demo\n  one minute\n  media_id VID\n" +
			"< [music] Song\n  https://example.com/s.mp3\n" +
			"< [link card] Guide\n  three minutes\n  https://example.com/guide\n" +
			"< [article] media_id MPN\n" +
			"< [article] article_id ART\n" +
			"< [card & coupon] card_id CARD\n" +
			"< [mini program] Open\n  wxmini pages/index\n"},
		{"template", "< [template message] TPL\n  first: shipped\n  remark: soon\n  https://example.com/o\n"},
		{"/scan", "usage: /scan SCENE\n"},
		{"/click", "usage: /click KEY\n"},
		{"/menu", "[cannot read the menu: rules: open scripted rules: no such file or directory]\n"},
		{"/voice", "usage: /voice TEXT\n"},
		{"/dance", "unknown command /dance: /help lists them\n"},
		{"/rules on", "[showing which rule answers each message]\n"},
		{"hello", "[rule: script]\n< you said: hello\n"},
		{"two rules", "[rules: first, second]\n< you said: two rules\n"},
		{"/unsubscribe", "[no rule matched]\n(no reply)\n"},
		{"/rules off", "[not showing which rule answers]\n"},
		{"hello", "< you said: hello\n"},
		{"/rules", "usage: /rules on|off\n"},
		{"/help", sandboxHelp},
		{"", ""},
		{"/quit", ""},
		{"after quit", ""}, // never read
	}
	var input, want strings.Builder
	want.WriteString("wxreply sandbox: you are WeChat user " + SandboxOpenID + ", chatting with scripted rules.\n")
	want.WriteString("Type a message, or /help for the events you can send. Edits to the rules apply live; /quit or Ctrl-D ends.\n")
	for _, s := range steps {
		input.WriteString(s.in + "\n")
		if s.in == "after quit" {
			continue
		}
		want.WriteString("> " + s.in + "\n" + s.want)
	}
	got := runSandbox(t, scriptedServe(r), input.String())
	if got != want.String() {
		t.Errorf("the terminal showed:\n%s\nwant:\n%s", got, want.String())
	}

	// What the server received is what WeChat would have posted.
	msgs := r.messages()
	byLine := map[string]*wechat.Message{}
	var lines []string // the lines that post a callback
	for _, s := range steps {
		switch s.in {
		case "", "/scan", "/click", "/menu", "/voice", "/dance", "/help", "/quit", "after quit", "/rules on", "/rules off", "/rules":
		default:
			lines = append(lines, s.in)
		}
	}
	if len(msgs) != len(lines) {
		t.Fatalf("server got %d callbacks, want %d (%q)", len(msgs), len(lines), lines)
	}
	for i, l := range lines {
		byLine[l] = msgs[i]
		if msgs[i].FromUserName != SandboxOpenID || msgs[i].ToUserName != sandboxGhID || msgs[i].CreateTime == 0 {
			t.Errorf("%q: from %q to %q at %d", l, msgs[i].FromUserName, msgs[i].ToUserName, msgs[i].CreateTime)
		}
	}
	checks := []struct {
		line, field, got, want string
	}{
		{"hello", "MsgType", byLine["hello"].MsgType, "text"},
		{"/subscribe spring", "EventKey", byLine["/subscribe spring"].EventKey, "qrscene_spring"},
		{"/unsubscribe", "Event", byLine["/unsubscribe"].Event, "unsubscribe"},
		{"/scan summer", "Event", byLine["/scan summer"].Event, "SCAN"},
		{"/click V1001_TODAY_MUSIC", "Event", byLine["/click V1001_TODAY_MUSIC"].Event, "CLICK"},
		{"/voice 今天天气", "MsgType", byLine["/voice 今天天气"].MsgType, "voice"},
		{"2", "bizmsgmenuid", byLine["2"].BizMsgMenuID, "102"},
		{"2", "Content", byLine["2"].Content, "no"},
		{"3", "bizmsgmenuid", byLine["3"].BizMsgMenuID, ""},
		{"/menu 101", "Content", byLine["/menu 101"].Content, "yes"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%q: %s = %q, want %q", c.line, c.field, c.got, c.want)
		}
	}
	for i := 1; i < len(msgs); i++ {
		if msgs[i].IsEvent() && msgs[i].CreateTime <= msgs[i-1].CreateTime {
			t.Errorf("%q: CreateTime %d not after the previous callback's %d: the server would drop it as a retry", lines[i], msgs[i].CreateTime, msgs[i-1].CreateTime)
		}
	}
	if n := r.pushCalls.Load(); n != 0 {
		t.Errorf("%d calls of the push API, want none: the sandbox watches the Sender", n)
	}
}

func TestSandboxEndsAtEOF(t *testing.T) {
	r := &scripted{}
	got := runSandbox(t, scriptedServe(r), "hi")
	if !strings.HasSuffix(got, "> hi\n< you said: hi\n") {
		t.Errorf("a last line without newline was not answered:\n%s", got)
	}
}

// Without Echo (a person at a terminal) a prompt comes before each read.
func TestSandboxPrompt(t *testing.T) {
	r := &scripted{}
	var out strings.Builder
	err := Sandbox(context.Background(), SandboxOptions{Serve: scriptedServe(r), In: strings.NewReader("hi\n"), Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out.String(), "> < you said: hi\n> \n") {
		t.Errorf("prompts wrong:\n%q", out.String())
	}
}

// A server that cannot start, or serves without handing over its Sender,
// ends the sandbox with the reason before any line is read.
func TestSandboxServerFails(t *testing.T) {
	failing := func(context.Context, net.Listener, SandboxServer) error {
		return errors.New("rules.yaml:3:5: unknown key \"mach\"")
	}
	noWatch := func(ctx context.Context, ln net.Listener, s SandboxServer) error {
		s.Watch = func(SenderStats) {} // the Sender is never handed over
		return scriptedServe(&scripted{})(ctx, ln, s)
	}
	for _, c := range []struct {
		name  string
		serve ServeFunc
		want  string
	}{
		{"invalid rules", failing, `the server did not start: rules.yaml:3:5: unknown key "mach"`},
		{"no Watch", noWatch, "sandbox: the server did not hand over its Sender"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out strings.Builder
			err := Sandbox(context.Background(), SandboxOptions{Serve: c.serve, In: strings.NewReader("hi\n"), Out: &out})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
			if out.Len() != 0 {
				t.Errorf("the terminal showed %q before the server was up", out.String())
			}
		})
	}
}
