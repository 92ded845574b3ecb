package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// rulesReplying is a valid file whose one rule answers "hi" with reply.
func rulesReplying(reply string) string {
	return "rules:\n  - name: hi\n    match: {text: {equals: hi}}\n    reply: [{text: " + reply + "}]\n"
}

// replyTo returns what the engine's current rules answer to "hi".
func replyTo(e *Engine) string {
	d := e.Decide(textMsg("hi"))
	if len(d.Replies) != 1 {
		return ""
	}
	return d.Replies[0].Custom.Text.Content
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// watching starts e.Watch and returns a channel of the sets it swaps in;
// the watcher stops when the test ends.
func watching(t *testing.T, path string, opts ...Option) (*Engine, chan *Set) {
	t.Helper()
	reloaded := make(chan *Set, 16)
	opts = append([]Option{WithLogger(slog.New(slog.DiscardHandler)), WithDebounce(20 * time.Millisecond)}, opts...)
	opts = append(opts, WithOnReload(func(s *Set) { reloaded <- s }))
	e, err := NewEngine(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	// fsnotify adds its watch inside Watch; give it a moment before the
	// test changes anything.
	time.Sleep(100 * time.Millisecond)
	return e, reloaded
}

// await waits for the watcher to swap in a set answering want.
func await(t *testing.T, e *Engine, reloaded chan *Set, want string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case <-reloaded:
			if got := replyTo(e); got == want {
				return
			}
		case <-deadline:
			t.Fatalf("no reload to %q within 5s; the engine answers %q", want, replyTo(e))
		}
	}
}

func TestWatchInPlaceWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, rulesReplying("one"))
	e, reloaded := watching(t, path)
	writeFile(t, path, rulesReplying("two"))
	await(t, e, reloaded, "two")
}

// Editors such as vim and most IDEs save by writing a new file and renaming
// it over the old one: a watch on the old file would never fire again.
func TestWatchRenameOverSave(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yaml")
	writeFile(t, path, rulesReplying("one"))
	e, reloaded := watching(t, path)
	for _, reply := range []string{"two", "three"} {
		tmp := filepath.Join(dir, ".rules.yaml.swp")
		writeFile(t, tmp, rulesReplying(reply))
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		await(t, e, reloaded, reply)
	}
}

// Kubernetes mounts a ConfigMap as rules.yaml -> ..data/rules.yaml,
// ..data -> ..2024_01_01_00_00_00.1234; an update writes a new timestamped
// directory and renames a new ..data symlink over the old one.
func TestWatchConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, reply string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name, "rules.yaml"), rulesReplying(reply))
	}
	version("..2024_01_01", "one")
	mustSymlink(t, "..2024_01_01", filepath.Join(dir, "..data"))
	mustSymlink(t, filepath.Join("..data", "rules.yaml"), filepath.Join(dir, "rules.yaml"))

	e, reloaded := watching(t, filepath.Join(dir, "rules.yaml"))
	for i, reply := range []string{"two", "three"} {
		name := "..2024_01_0" + string(rune('2'+i))
		version(name, reply)
		mustSymlink(t, name, filepath.Join(dir, "..data_tmp"))
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		await(t, e, reloaded, reply)
	}
}

// A symlink to a file in another directory is edited there.
func TestWatchSymlinkTargetElsewhere(t *testing.T) {
	real := filepath.Join(t.TempDir(), "real.yaml")
	writeFile(t, real, rulesReplying("one"))
	link := filepath.Join(t.TempDir(), "rules.yaml")
	mustSymlink(t, real, link)
	e, reloaded := watching(t, link)
	writeFile(t, real, rulesReplying("two"))
	await(t, e, reloaded, "two")
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// An invalid edit keeps the last good rules and logs every problem with
// its position; fixing the file loads it.
func TestInvalidEditKeepsTheRulesInForce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, rulesReplying("good"))
	logger, logs := logBuffer()
	e, reloaded := watching(t, path, WithLogger(logger))
	first := e.Current()

	writeFile(t, path, "rules:\n  - name: hi\n    match: {txt: hi}\n    reply: [{text: {content: [x]}}]\n")
	err := e.Reload()
	var le *LoadError
	if !errors.As(err, &le) || len(le.Problems) != 3 {
		t.Fatalf("Reload() = %v, want a *LoadError with 3 problems", err)
	}
	if e.Current() != first || replyTo(e) != "good" {
		t.Fatalf("the invalid file replaced the rules in force")
	}
	// The watcher saw the bad write too; wait out its debounce, then check
	// that it did not swap either.
	time.Sleep(200 * time.Millisecond)
	if e.Current() != first {
		t.Fatalf("the watcher swapped in an invalid file")
	}
	logged := logs.String()
	for _, p := range le.Problems {
		quoted, _ := json.Marshal(p.String())
		if !strings.Contains(logged, `"problem":`+string(quoted)) {
			t.Errorf("log lacks %q:\n%s", p, logged)
		}
	}

	writeFile(t, path, rulesReplying("fixed"))
	await(t, e, reloaded, "fixed")
}

func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, rulesReplying("one"))
	logger, logs := logBuffer()
	var swapped []*Set
	e, err := NewEngine(path, WithLogger(logger), WithOnReload(func(s *Set) { swapped = append(swapped, s) }))
	if err != nil {
		t.Fatal(err)
	}
	first := e.Current()
	if !strings.Contains(logs.String(), `"msg":"rules loaded"`) || !strings.Contains(logs.String(), `"rules":1`) || !strings.Contains(logs.String(), first.Hash()) {
		t.Errorf("load log lacks the count and hash: %s", logs)
	}

	// Unchanged content: nothing is swapped.
	if err := e.Reload(); err != nil || e.Current() != first || len(swapped) != 0 {
		t.Fatalf("reload of the same file: err %v, swapped %d", err, len(swapped))
	}
	writeFile(t, path, rulesReplying("two"))
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if replyTo(e) != "two" || len(swapped) != 1 || swapped[0] != e.Current() || e.Current().Hash() == first.Hash() {
		t.Errorf("after reload: reply %q, %d swaps, hash %s (was %s)", replyTo(e), len(swapped), e.Current().Hash(), first.Hash())
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := e.Reload(); err == nil || replyTo(e) != "two" {
		t.Errorf("reload of a removed file: err %v, reply %q; want an error and the rules kept", err, replyTo(e))
	}
}

func TestNewEngineRefusesInvalidRules(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, "rules: [{name: a}]\n")
	var le *LoadError
	if _, err := NewEngine(path); !errors.As(err, &le) {
		t.Errorf("NewEngine = %v, want a *LoadError", err)
	}
}

func TestWatchStopsWithTheContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, rulesReplying("one"))
	e, err := NewEngine(path, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watch = %v, want nil after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after its context was cancelled")
	}
}

// Watch must not outlive its context: when it returns, its watcher is
// closed (fsnotify's reading goroutine gone) and changes to the file no
// longer reload anything.
func TestWatchLeavesNothingRunning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, rulesReplying("one"))
	before := runtime.NumGoroutine()
	reloaded := make(chan *Set, 16)
	e, err := NewEngine(path, WithLogger(slog.New(slog.DiscardHandler)),
		WithDebounce(20*time.Millisecond), WithOnReload(func(s *Set) { reloaded <- s }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx) }()
	time.Sleep(100 * time.Millisecond)
	writeFile(t, path, rulesReplying("two"))
	await(t, e, reloaded, "two")

	// Cancel while events are still arriving.
	writeFile(t, path, rulesReplying("three"))
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch = %v, want nil after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after its context was cancelled")
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Watch returned, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
	for len(reloaded) > 0 {
		<-reloaded // a reload of "three" that began before the cancel
	}
	writeFile(t, path, rulesReplying("four"))
	time.Sleep(200 * time.Millisecond)
	if got := replyTo(e); got == "four" {
		t.Errorf("a write after Watch returned was loaded")
	}
}

// A burst of writes (an editor, a deploy script, a sync tool) reloads
// once it is over, not once per write.
func TestWatchDebouncesAStorm(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, rulesReplying("start"))
	logger, logs := logBuffer()
	e, reloaded := watching(t, path, WithDebounce(150*time.Millisecond), WithLogger(logger))
	logs.Reset()
	for i := range 100 {
		writeFile(t, path, rulesReplying(fmt.Sprintf("v%d", i)))
		time.Sleep(time.Millisecond)
	}
	await(t, e, reloaded, "v99")
	time.Sleep(300 * time.Millisecond) // any late reload would show now
	if n := strings.Count(logs.String(), `"msg":"rules loaded"`); n > 3 {
		t.Errorf("100 writes in a burst reloaded %d times, want one (at most 3 on a slow machine)", n)
	}
}

// A file that never stops changing is still reloaded: the debounce
// cannot postpone a reload for ever.
func TestWatchReloadsAFileThatKeepsChanging(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	writeFile(t, path, rulesReplying("start"))
	const debounce = 100 * time.Millisecond
	e, reloaded := watching(t, path, WithDebounce(debounce))
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(debounce / 5):
				if err := os.WriteFile(path, []byte(rulesReplying(fmt.Sprintf("v%d", i))), 0o644); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	defer func() { close(stop); <-writerDone }()
	select {
	case <-reloaded:
		if got := replyTo(e); got == "start" {
			t.Errorf("the reload kept the first version")
		}
	case <-time.After(maxDelayFactor*debounce + 3*time.Second):
		t.Fatalf("no reload within %v while the file kept changing", maxDelayFactor*debounce+3*time.Second)
	}
}
