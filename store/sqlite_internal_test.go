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

// TestSplitIDs: keys written as JSON read back as written; keys written
// comma-joined by the first version still read.
func TestSplitIDs(t *testing.T) {
	for _, ids := range [][]string{{}, {"a"}, {"a,b", "[c]", ""}} {
		got := splitIDs(joinIDs(ids))
		if len(got) != len(ids) {
			t.Errorf("splitIDs(joinIDs(%q)) = %q", ids, got)
			continue
		}
		for i := range ids {
			if got[i] != ids[i] {
				t.Errorf("splitIDs(joinIDs(%q)) = %q", ids, got)
			}
		}
	}
	if got := splitIDs("a,b"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf(`splitIDs("a,b") = %q`, got)
	}
	if got := splitIDs(""); got != nil {
		t.Errorf(`splitIDs("") = %q`, got)
	}
}
