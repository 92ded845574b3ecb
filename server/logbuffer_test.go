package server

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// blockingWriter holds every Write until released, as a log file on a
// stalled disk would.
type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
	writes  int
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes++
	return w.buf.Write(p)
}

func (w *blockingWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestLogBufferBatchesAndFlushesOnClose(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	close(w.release)
	b := NewLogBuffer(w)
	var want strings.Builder
	for i := range 1000 {
		line := strings.Repeat("x", i%50) + "\n"
		want.WriteString(line)
		b.Write([]byte(line))
	}
	b.Close()
	if got := w.String(); got != want.String() {
		t.Fatalf("wrote %d bytes, want %d, in order", len(got), want.Len())
	}
	if w.writes >= 1000 {
		t.Errorf("%d writes for 1000 lines: not batched", w.writes)
	}
	b.Write([]byte("after close\n"))
	if !strings.HasSuffix(w.String(), "after close\n") {
		t.Error("a line written after Close was not written through")
	}
}

func TestLogBufferNeverBlocksAndCountsDrops(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	b := NewLogBuffer(w)
	line := []byte(strings.Repeat("y", 1023) + "\n")
	done := make(chan struct{})
	go func() {
		// Twice what the buffer holds, with the file stalled: none of
		// these may wait for it.
		for range 2 * LogMaxPending / len(line) {
			b.Write(line)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Write blocked on a stalled file")
	}
	if b.Dropped() == 0 {
		t.Error("lines beyond LogMaxPending were not counted as dropped")
	}
	close(w.release)
	b.Close()
	if n := int64(len(w.String()) / len(line)); n+b.Dropped() != int64(2*LogMaxPending/len(line)) {
		t.Errorf("%d lines written and %d dropped, want %d in all", n, b.Dropped(), 2*LogMaxPending/len(line))
	}
}
