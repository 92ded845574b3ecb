package tools

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wxreply/wxreply/rules"
)

// reloadingServe is scriptedServe with a real rules engine on a file
// beside it, reporting its reloads as serve's wiring does.
func reloadingServe(r *scripted, e *rules.Engine) ServeFunc {
	serve := scriptedServe(r)
	return func(ctx context.Context, ln net.Listener, s SandboxServer) error {
		e.ReportReloads(s.Reloaded)
		return serve(ctx, ln, s)
	}
}

// waitOutput waits until out shows want after its first from bytes and
// returns where it ends.
func waitOutput(t *testing.T, out *syncBuffer, from int, want string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if i := strings.Index(out.String()[from:], want); i >= 0 {
			return from + i + len(want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the terminal never showed %q:\n%s", want, out.String()[from:])
	return 0
}

// Each reload of the rules file is said at once while the person types:
// an edit that applied, a save that changed nothing, and every problem of
// an edit that was refused, as FILE:LINE:COL: message.
func TestSandboxReloadNotices(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	write := func(content string) {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("rules:\n  - name: a\n    match: {text: {equals: [a]}}\n    reply: [{text: a}]\n")
	e, err := rules.NewEngine(path, rules.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- Sandbox(context.Background(), SandboxOptions{Serve: reloadingServe(&scripted{}, e), RulesPath: path, In: inR, Out: out, Echo: true})
	}()
	at := waitOutput(t, out, 0, "/quit or Ctrl-D ends.\n")

	write("rules:\n  - name: a\n    match: {text: {equals: [a]}}\n    reply: [{text: a}]\n  - name: b\n    match: {text: {equals: [b]}}\n    reply: [{text: b}]\n")
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	at = waitOutput(t, out, at, "[rules reloaded: 2 rules]\n")
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	at = waitOutput(t, out, at, "[rules unchanged: 2 rules]\n")

	write("rules:\n  - name: a\n    mach: {}\n    reply: [{text: a}]\n")
	var le *rules.LoadError
	if err := e.Reload(); !errors.As(err, &le) {
		t.Fatalf("Reload: %v, want a *rules.LoadError", err)
	}
	want := "[rules not reloaded, " + count(len(le.Problems), "problem") + ": the rules in force stay]\n"
	for _, p := range le.Problems {
		want += p.String() + "\n"
	}
	at = waitOutput(t, out, at, want)
	if !strings.Contains(want, path+":3:5: ") {
		t.Errorf("the problems do not say where:\n%s", want)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Reload: %v", err)
	}
	at = waitOutput(t, out, at, "[rules not reloaded: rules: open "+path+": no such file or directory; the rules in force stay]\n")

	// The chat goes on.
	if _, err := io.WriteString(inW, "hi\n"); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, out, at, "> hi\n< you said: hi\n")
	inW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// After the sandbox ended, a reload shows nothing.
	end := out.String()
	write("rules:\n  - name: c\n    match: {text: {equals: [c]}}\n    reply: [{text: c}]\n")
	_ = e.Reload()
	if out.String() != end {
		t.Errorf("the sandbox wrote after it ended: %q", out.String()[len(end):])
	}
}

// A notice waits while a line is answered, so that it never cuts a reply
// in two; while the person types it shows at once, at a terminal below
// the prompt and with the prompt again after it.
func TestConsole(t *testing.T) {
	for _, tt := range []struct {
		name string
		echo bool
		want string
	}{
		{"piped", true, "banner\nheld\nanswer\nheld too\nat once\n"},
		{"terminal", false, "banner\nheld\n> answer\nheld too\n> \nat once\n> "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			c := newConsole(&b, tt.echo)
			b.WriteString("banner\n") // the session writes from the start
			c.notice("held")
			c.idle()
			c.answering()
			b.WriteString("answer\n")
			c.notice("held too")
			c.idle()
			c.notice("at once")
			c.close()
			c.notice("never")
			if b.String() != tt.want {
				t.Errorf("the terminal showed %q, want %q", b.String(), tt.want)
			}
		})
	}
}

// The problems of a refused edit are named after the rules file as the
// person gave it, as check names them.
func TestReloadNoticePaths(t *testing.T) {
	abs, err := filepath.Abs("rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, bad := rules.Parse(abs, []byte("rules:\n  - name: a\n    mach: {}\n    reply: [{text: a}]\n"))
	if bad == nil {
		t.Fatal("a bad file parsed")
	}
	good, err := rules.Parse(abs, []byte("rules:\n  - name: a\n    match: {text: {equals: [a]}}\n    reply: [{text: a}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	refused := reloadNotice(rules.ReloadResult{Rules: good, Err: bad}, "rules.yaml")
	if len(refused) < 2 || !slices.ContainsFunc(refused[1:], func(l string) bool { return strings.HasPrefix(l, "rules.yaml:3:5: ") }) {
		t.Errorf("refused: %q, want the problems at rules.yaml:LINE:COL", refused)
	}
	for _, l := range refused[1:] {
		if !strings.HasPrefix(l, "rules.yaml:") {
			t.Errorf("problem %q is not named after rules.yaml", l)
		}
	}
	if strings.Contains(strings.Join(refused, "\n"), abs) {
		t.Errorf("refused: %q names the file by its absolute path", refused)
	}
	if got := reloadNotice(rules.ReloadResult{Rules: good, Changed: true}, "rules.yaml"); len(got) != 1 || got[0] != "[rules reloaded: 1 rule]" {
		t.Errorf("applied: %q", got)
	}
}

// ShowRules (-show-rule) says which rules answered from the first line.
func TestSandboxShowRules(t *testing.T) {
	got := runSandboxWith(t, SandboxOptions{Serve: scriptedServe(&scripted{}), In: strings.NewReader("hello\n/unsubscribe\n"), ShowRules: true})
	want := "> hello\n[rule: script]\n< you said: hello\n> /unsubscribe\n[no rule matched]\n(no reply)\n"
	if !strings.HasSuffix(got, want) {
		t.Errorf("the terminal showed:\n%s\nwant it to end with:\n%s", got, want)
	}
}
