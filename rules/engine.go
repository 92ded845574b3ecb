package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/wxreply/wxreply/wechat"
)

// Engine holds the current rules and reloads them when the file changes:
// a reload that fails keeps the last good rules, so a bad edit never takes
// the auto-responder down.
type Engine struct {
	path string // absolute
	opts options
	cur  atomic.Pointer[Set]
	mu   sync.Mutex // one reload at a time, so an older file never wins

	// What the metrics show (metrics.go).
	matches matchCounts
	loads   loadTimes

	// report is told what each Reload came to (ReportReloads); guarded by mu.
	report func(ReloadResult)
}

// NewEngine loads the rules file at path; it fails if the file is invalid.
func NewEngine(path string, opts ...Option) (*Engine, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	e := &Engine{path: abs, opts: buildOptions(opts)}
	s, err := load(e.path, e.opts)
	if err != nil {
		return nil, err
	}
	e.cur.Store(s)
	e.loads.loaded(time.Now(), true)
	e.opts.logger.Info("rules loaded", "file", e.path, "rules", s.Len(), "hash", s.Hash())
	logWarnings(e.opts.logger, s)
	return e, nil
}

// Current returns the rules in force.
func (e *Engine) Current() *Set { return e.cur.Load() }

// Decide decides with the rules in force.
func (e *Engine) Decide(m *wechat.Message) Decision { return e.Current().Decide(m) }

// DecideWithState decides with the rules in force, reading the sender's
// conversation state only if they test one (Set.DecideWithState).
func (e *Engine) DecideWithState(m *wechat.Message, state func() (string, error)) (Decision, error) {
	return e.Current().DecideWithState(m, state)
}

// Reload loads the file again and swaps it in when it is valid. When it is
// not, every problem is logged with its position, the rules in force stay,
// and the error (a *LoadError, or the read error) is returned. It is what
// SIGHUP does.
func (e *Engine) Reload() (err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	changed := false
	defer func() { e.reportReload(changed, err) }()
	log := e.opts.logger
	s, err := load(e.path, e.opts)
	if err != nil {
		e.loads.failed(time.Now())
		var le *LoadError
		if errors.As(err, &le) {
			for _, p := range le.Problems {
				log.Error("rules reload failed: keeping the rules in force", "problem", p.String())
			}
		} else {
			log.Error("rules reload failed: keeping the rules in force", "file", e.path, "err", err)
		}
		return err
	}
	if old := e.cur.Load(); old.Hash() == s.Hash() {
		e.loads.loaded(time.Now(), false)
		log.Info("rules unchanged", "file", e.path, "rules", old.Len(), "hash", old.Hash())
		return nil
	}
	e.cur.Store(s)
	changed = true
	e.matches.keep(s)
	e.loads.loaded(time.Now(), true)
	log.Info("rules loaded", "file", e.path, "rules", s.Len(), "hash", s.Hash())
	logWarnings(log, s)
	if e.opts.onReload != nil {
		e.opts.onReload(s)
	}
	return nil
}

// ReloadResult is what one Reload came to.
type ReloadResult struct {
	Rules   *Set  // the rules in force after it
	Changed bool  // the file loaded and its rules replaced the ones before
	Err     error // why the file was not loaded (a *LoadError lists every problem); the rules in force stay
}

// ReportReloads makes e tell f what every Reload comes to — each change
// Watch sees, each SIGHUP — an unchanged file and a refused one included,
// so that a caller can show it (the sandbox does). f runs on the reloading
// goroutine, one reload at a time, and must not call Reload. It replaces
// the f before; nil stops the reports.
func (e *Engine) ReportReloads(f func(ReloadResult)) {
	e.mu.Lock()
	e.report = f
	e.mu.Unlock()
}

func (e *Engine) reportReload(changed bool, err error) {
	if e.report != nil {
		e.report(ReloadResult{Rules: e.cur.Load(), Changed: changed, Err: err})
	}
}

// Watch reloads the rules when the file changes, until ctx is done. It
// watches the directory, not the file: editors that save by writing a new
// file and renaming it over the old one, and Kubernetes, which swaps a
// ConfigMap's ..data symlink, replace the file a watch on it would follow.
// A burst of events reloads once, after the debounce delay; a file that
// never stops changing is still reloaded every maxDelayFactor debounce
// delays, so that a storm of writes cannot hold a fix back for good. The
// caller owns the goroutine Watch runs on; Watch closes its watcher before
// it returns.
func (e *Engine) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("rules: watch: %w", err)
	}
	defer w.Close()
	dir := filepath.Dir(e.path)
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("rules: watch %s: %w", dir, err)
	}
	// A symlink to a file elsewhere is edited there: watch that directory
	// too, and follow the link when it changes.
	target := e.watchTarget(w, dir, "")

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var pending time.Time // the first change not loaded yet; zero when none
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("rules: watch: the watcher closed")
			}
			if e.relevant(ev, target) {
				now := time.Now()
				if pending.IsZero() {
					pending = now
				}
				deadline := pending.Add(maxDelayFactor * e.opts.debounce)
				timer.Reset(min(e.opts.debounce, max(deadline.Sub(now), 0)))
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("rules: watch: the watcher closed")
			}
			e.opts.logger.Warn("rules watch error", "file", e.path, "err", err)
		case <-timer.C:
			pending = time.Time{}
			_ = e.Reload() // Reload logs what went wrong
			target = e.watchTarget(w, dir, target)
		}
	}
}

// maxDelayFactor bounds, in debounce delays, how long Watch waits to
// reload a file that keeps changing.
const maxDelayFactor = 10

// relevant reports whether ev may have changed the rules file.
func (e *Engine) relevant(ev fsnotify.Event, target string) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	name := filepath.Clean(ev.Name)
	return name == e.path || name == target || filepath.Base(name) == "..data"
}

// watchTarget watches the directory of the file the rules path resolves
// to, when that is not dir, and returns the resolved path. old is the
// previous one, whose directory is no longer watched.
func (e *Engine) watchTarget(w *fsnotify.Watcher, dir, old string) string {
	target, err := filepath.EvalSymlinks(e.path)
	if err != nil || target == old {
		return old
	}
	if old != "" && filepath.Dir(old) != dir && filepath.Dir(old) != filepath.Dir(target) {
		_ = w.Remove(filepath.Dir(old)) // it may be gone already, as after a ConfigMap swap
	}
	if tdir := filepath.Dir(target); tdir != dir {
		if err := w.Add(tdir); err != nil {
			e.opts.logger.Warn("rules watch: cannot watch the link target's directory", "dir", tdir, "err", err)
		}
	}
	return target
}

// logWarnings logs what loaded but is probably not what was meant, one
// line a warning, as check prints them.
func logWarnings(log *slog.Logger, s *Set) {
	for _, w := range s.Warnings() {
		log.Warn("rules file warning", "problem", w.String())
	}
}
