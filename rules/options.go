package rules

import (
	"log/slog"
	"math/rand/v2"
	"time"
)

// Option configures Load, Parse and NewEngine.
type Option func(*options)

type options struct {
	logger   *slog.Logger
	intn     func(n int) int
	onReload func(*Set)
	debounce time.Duration
	menuOnly bool // LoadMenu: a file with only `menu:` is valid
	now      func() time.Time
}

func buildOptions(opts []Option) options {
	o := options{intn: rand.IntN, debounce: 200 * time.Millisecond}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if o.intn == nil {
		o.intn = rand.IntN
	}
	if o.now == nil {
		o.now = time.Now
	}
	return o
}

// WithLogger sets the logger for reloads and for replies skipped at run
// time. Nil means slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithRand sets the random source of `pick: random`: intn(n) returns a
// number in [0, n). It must be safe for concurrent use. Tests pass a fixed
// one to make decisions deterministic; the default is math/rand/v2.IntN.
func WithRand(intn func(n int) int) Option {
	return func(o *options) { o.intn = intn }
}

// WithOnReload makes an Engine call f with every new Set it swaps in
// (not with the first, which NewEngine returns with).
func WithOnReload(f func(*Set)) Option {
	return func(o *options) { o.onReload = f }
}

// WithDebounce sets how long Watch waits after the last change to the
// rules file before reloading it, so that an editor's burst of writes
// loads once. The default is 200ms.
func WithDebounce(d time.Duration) Option {
	return func(o *options) { o.debounce = d }
}

// WithClock sets the clock that `time:` match keys read: the time the
// server decides on a message, not the message's CreateTime. Tests pass
// their own; the default is time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}
