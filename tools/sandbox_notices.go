package tools

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"

	"github.com/wxreply/wxreply/rules"
)

// What the sandbox says besides the replies: what became of an edit of the
// rules file, which can come at any moment, and which rules answered a
// line.

// console is the sandbox's terminal, shared by the session and the
// notices of reloads. While the session answers a line it writes alone: a
// notice that comes then waits until the answer is out, so that it never
// lands in the middle of one. A notice that comes while the person types
// shows at once.
type console struct {
	out  io.Writer
	echo bool // no prompt: see SandboxOptions.Echo

	mu     sync.Mutex
	busy   bool     // the session is writing: from the start until the first prompt, and while a line is answered
	closed bool     // the session has ended: nothing more is written
	held   []string // the notices that came while busy
}

func newConsole(out io.Writer, echo bool) *console {
	return &console{out: out, echo: echo, busy: true}
}

// notice shows lines now, or once the line being answered is.
func (c *console) notice(lines ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
	case c.busy:
		c.held = append(c.held, lines...)
	case c.echo:
		writeRaw(c.out, lines)
	default:
		// The prompt is shown, perhaps with half a line typed after it:
		// the notice goes below it, and the prompt again after it, the
		// typed half still in the terminal's line.
		fmt.Fprintln(c.out)
		writeRaw(c.out, lines)
		fmt.Fprint(c.out, "> ")
	}
}

// idle shows the notices held and, at a terminal, the prompt: the session
// is about to wait for a line.
func (c *console) idle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	writeRaw(c.out, c.held)
	c.held = nil
	if !c.echo {
		fmt.Fprint(c.out, "> ")
	}
	c.busy = false
}

// answering marks the session as writing: it has read a line.
func (c *console) answering() {
	c.mu.Lock()
	c.busy = true
	c.mu.Unlock()
}

// close ends the output: a notice after the session ended is dropped.
func (c *console) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}

func writeRaw(w io.Writer, lines []string) {
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

// reloadNotice is what the sandbox says of one reload of the rules file.
// Problems are named after the rules file as the person gave it (the
// engine knows it by its absolute path), in check's FILE:LINE:COL form.
func reloadNotice(r rules.ReloadResult, rulesPath string) []string {
	shown := func(s string) string { return s }
	if abs, err := filepath.Abs(rulesPath); err == nil && rulesPath != "" && abs != rulesPath {
		shown = func(s string) string { return strings.ReplaceAll(s, abs, rulesPath) }
	}
	n := 0
	if r.Rules != nil {
		n = r.Rules.Len()
	}
	var le *rules.LoadError
	switch {
	case r.Err == nil && r.Changed:
		return []string{"[rules reloaded: " + count(n, "rule") + "]"}
	case r.Err == nil:
		return []string{"[rules unchanged: " + count(n, "rule") + "]"}
	case errors.As(r.Err, &le):
		lines := []string{"[rules not reloaded, " + count(len(le.Problems), "problem") + ": the rules in force stay]"}
		for _, p := range le.Problems {
			p.File = shown(p.File)
			lines = append(lines, p.String())
		}
		return lines
	}
	return []string{"[rules not reloaded: " + shown(r.Err.Error()) + "; the rules in force stay]"}
}

func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// ruleLine says which rules answered a message, as Decided reports them.
func ruleLine(names []string) string {
	switch len(names) {
	case 0:
		return "[no rule matched]"
	case 1:
		return "[rule: " + names[0] + "]"
	}
	return "[rules: " + strings.Join(names, ", ") + "]"
}

// decisions collects what the rules decided on the sandbox user's
// messages, as the ServeFunc reports it: the server decides before it
// answers the callback, so after the answer the line's decision is here.
type decisions struct {
	openid string

	mu   sync.Mutex
	list [][]string
}

func (d *decisions) add(openid string, names []string) {
	if openid != d.openid {
		return
	}
	d.mu.Lock()
	d.list = append(d.list, names)
	d.mu.Unlock()
}

// take returns the decisions since the last take.
func (d *decisions) take() [][]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.list
	d.list = nil
	return l
}
