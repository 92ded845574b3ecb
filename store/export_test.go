package store

import (
	"context"
	"fmt"
)

// CountRows counts the rows of table, for tests that check what pruning
// deleted.
func (s *SQLite) CountRows(ctx context.Context, table string) (int, error) {
	var n int
	err := s.do(ctx, "test", false, func(tx *txn) error {
		_, err := tx.row(fmt.Sprintf("SELECT COUNT(*) FROM %q", table), nil, &n)
		return err
	})
	return n, err
}

// SeenLen is how many retry marks and signed-query bindings the store
// holds in memory.
func (s *SQLite) SeenLen(ctx context.Context) (int, error) {
	var n int
	err := s.do(ctx, "test", false, func(*txn) error {
		n = s.seen.len()
		return nil
	})
	return n, err
}

// Housekeep runs the writer's housekeeping round now.
func (s *SQLite) Housekeep(ctx context.Context) error {
	return s.do(ctx, "test", false, func(*txn) error {
		s.seen.prune(ms(s.o.Now()))
		return nil
	})
}
