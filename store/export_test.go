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
