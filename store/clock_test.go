package store_test

import (
	"sync"
	"testing"
	"time"
)

// clock is SQLiteOptions.Now under the test's control. The store reads it
// once at the start of each housekeeping round (on its writer goroutine,
// one round after the other), so counting the reads tells the test when
// a round that saw the time it set has finished, without sleeping.
type clock struct {
	mu    sync.Mutex
	now   time.Time
	reads int
	read  chan struct{} // closed and replaced at every read
}

func newClock(t time.Time) *clock {
	return &clock{now: t, read: make(chan struct{})}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	close(c.read)
	c.read = make(chan struct{})
	return c.now
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// housekept waits until a whole housekeeping round has run since the call
// (the round that read the clock after it has finished once the next
// round starts), failing after a deadline.
func (c *clock) housekept(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	want := c.reads + 2
	c.mu.Unlock()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		reads, read := c.reads, c.read
		c.mu.Unlock()
		if reads >= want {
			return
		}
		select {
		case <-read:
		case <-deadline:
			t.Fatal("the store's housekeeping did not run within 10s")
		}
	}
}
