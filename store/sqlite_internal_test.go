package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestWaitAfterWriterGone: an operation that reached the queue after the
// writer drained it for Close is answered ErrClosed, not waited for
// forever. (do's two selects let a send win against a closed stopped.)
func TestWaitAfterWriterGone(t *testing.T) {
	s, err := OpenSQLite(SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	o := &op{ctx: context.Background(), fn: func(*txn) error { return nil }, done: make(chan struct{})}
	s.ops <- o // the send that won its select against <-s.stopped
	got := make(chan error, 1)
	go func() { got <- s.wait(context.Background(), o) }()
	select {
	case err := <-got:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("wait = %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait on an operation no writer will run did not return")
	}
}
