package store

import (
	"context"
	"fmt"
	"strings"
	"time"
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

// CloseLosingTxn closes the store as a kill -9 would leave it: the
// journaled transaction is lost, and the journal stays.
func (s *SQLite) CloseLosingTxn() error {
	s.lose.Store(true)
	return s.Close()
}

// Dump writes out every row of the store's tables but the journal's mark
// in meta, in key order, for tests that compare two stores.
func (s *SQLite) Dump(ctx context.Context) (string, error) {
	var b strings.Builder
	err := s.do(ctx, "test", false, func(tx *txn) error {
		for _, table := range []string{"items", "lanes", "marks", "idem", "windows", "early", "meta", "media", "bindings", "states"} {
			rows, err := tx.query(fmt.Sprintf("SELECT * FROM %q WHERE %s ORDER BY 1, 2", table,
				map[bool]string{true: "key <> 'journal'", false: "1"}[table == "meta"]))
			if err != nil {
				return err
			}
			cols, _ := rows.Columns()
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					rows.Close()
					return err
				}
				fmt.Fprintf(&b, "%s %q\n", table, fmt.Sprint(vals...))
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	return b.String(), err
}

// FailCommits makes the next n commits of the journaled transaction fail.
func (s *SQLite) FailCommits(n int) { s.failCommit.Store(int32(n)) }

// Prune runs a chunk of the housekeeping's pruning at now, journaled as
// the housekeeping's are.
func (s *SQLite) Prune(ctx context.Context, now time.Time) error {
	var out opOut
	rec := &opRec{Kind: opPrune, Now: now}
	return s.submit(ctx, &op{ctx: ctx, kind: opPrune, rec: rec, write: true, done: make(chan struct{}), fn: func(tx *txn) error {
		rec.Key = s.windowCursor // as pruneChunk takes it, in the writer
		return s.apply(tx, rec, &out)
	}})
}
