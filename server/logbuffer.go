package server

import (
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// LogBuffer puts a buffer between the log and its file, so that a
// callback's log lines cost an append rather than a write(2) each: lines
// are written in batches by a goroutine of its own, when a batch is full
// and at least every LogFlushEvery. Write never blocks on the file; if
// the file falls so far behind that LogMaxPending bytes wait, further
// lines are dropped and counted in Dropped rather than holding up the
// callbacks. Close writes what is left. What a kill -9 finds in the
// buffer (at most LogFlushEvery of lines) is lost; nothing recorded in
// the store depends on it.
type LogBuffer struct {
	w io.Writer

	mu     sync.Mutex
	buf    []byte
	spare  []byte
	closed bool

	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	dropped atomic.Int64
}

// The LogBuffer's sizes and pace.
const (
	LogFlushEvery = 100 * time.Millisecond
	logFlushAt    = 64 << 10
	LogMaxPending = 8 << 20
)

// NewLogBuffer starts a LogBuffer in front of w.
func NewLogBuffer(w io.Writer) *LogBuffer {
	b := &LogBuffer{
		w:    w,
		buf:  make([]byte, 0, logFlushAt),
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go b.run()
	return b
}

// Write takes one log line (slog writes a record at a time).
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed {
		defer b.mu.Unlock()
		return b.w.Write(p)
	}
	if len(b.buf)+len(p) > LogMaxPending {
		b.mu.Unlock()
		b.dropped.Add(1)
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	full := len(b.buf) >= logFlushAt
	b.mu.Unlock()
	if full {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// Dropped is how many lines were dropped because the file fell behind.
func (b *LogBuffer) Dropped() int64 { return b.dropped.Load() }

func (b *LogBuffer) run() {
	defer close(b.done)
	t := time.NewTicker(LogFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-b.kick:
		case <-b.stop:
			b.flush()
			return
		}
		b.flush()
	}
}

// flush writes what has been buffered, outside the lock, so that lines
// keep being taken while the file is written.
func (b *LogBuffer) flush() {
	b.mu.Lock()
	out := b.buf
	b.buf = b.spare[:0]
	b.mu.Unlock()
	if len(out) > 0 {
		_, _ = b.w.Write(out)
	}
	b.spare = out
}

// Close writes what is left and stops the LogBuffer; later lines are
// written straight to the file.
func (b *LogBuffer) Close() error {
	b.once.Do(func() { close(b.stop) })
	<-b.done
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if len(b.buf) > 0 { // written between the last flush and now
		_, _ = b.w.Write(b.buf)
		b.buf = b.buf[:0]
	}
	return nil
}
