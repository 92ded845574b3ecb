package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The SQLite store's retry marks and signed-query bindings: what every
// callback with a reply (and every plaintext one) looks up and writes.
// Each lives in the store, not in memory, so that memory does not grow
// with the callbacks. Keyed by a key's text, with an index by expiry,
// each cost two B-tree inserts a callback — the pages a COMMIT and a
// checkpoint write. So a row is keyed by a 64-bit SHA-256 prefix of the
// key's text, and a binding is filed under (at, key), at the query's
// signed timestamp, which is part of the query: bindings then arrive in
// time order, and pruning deletes the oldest rows without an index by
// expiry. A mark cannot be filed so: a message's retries are recognised
// by its MsgId alone, whatever else the copy carries; a mark is keyed by
// its hash (an integer key, the table's rowid) with an index by expiry,
// which grows at its end.
//
// A 64-bit hash of a key is as good as the key here: WeChat's keys are
// not chosen to collide (a chance of 2^-64 per pair), and a collision on
// purpose needs a second preimage of SHA-256's first 64 bits.

// markKey is the hash a key is filed under.
func markKey(s string) int64 {
	h := sha256.Sum256([]byte(s))
	return int64(binary.BigEndian.Uint64(h[:8]))
}

// markAt is the second a time is filed under; 0 when unknown.
func markAt(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// bindQuery binds b's signed query to its body unless a live binding is
// there; a live one with another body is ErrQueryReused, and nothing is
// written.
func (s *SQLite) bindQuery(tx *txn, b *Batch, now int64) error {
	at, key := markAt(b.QueryAt), markKey(b.Query)
	if s.legacy(at, now) {
		var body []byte
		found, err := tx.row("SELECT body FROM query_bindings WHERE at = 0 AND key = ? AND expires > ?", []any{key, now}, &body)
		if err != nil || found {
			if err == nil && !sameBody(body, b.QueryBody) {
				err = ErrQueryReused
			}
			return err
		}
	}
	n, err := tx.execN(`INSERT INTO query_bindings(at, key, body, expires) VALUES(?, ?, ?, ?)
		ON CONFLICT(at, key) DO UPDATE SET body = excluded.body, expires = excluded.expires WHERE query_bindings.expires <= ?`,
		at, key, b.QueryBody, ms(b.Now.Add(b.QueryTTL)), now)
	if err != nil || n > 0 {
		return err
	}
	var body []byte
	if _, err := tx.row("SELECT body FROM query_bindings WHERE at = ? AND key = ?", []any{at, key}, &body); err != nil {
		return err
	}
	if !sameBody(body, b.QueryBody) {
		return ErrQueryReused
	}
	return nil
}

// markOnce records b's retry mark unless a live one is there, which makes
// b a duplicate with the first copy's answer. An expired mark not yet
// pruned is replaced.
func (s *SQLite) markOnce(tx *txn, b *Batch, now int64) (answer []byte, duplicate bool, err error) {
	key := markKey(b.Dedupe)
	n, err := tx.execN(`INSERT INTO retry_marks(key, expires, answer) VALUES(?, ?, ?)
		ON CONFLICT(key) DO UPDATE SET expires = excluded.expires, answer = excluded.answer WHERE retry_marks.expires <= ?`,
		key, ms(b.Now.Add(b.DedupeTTL)), b.Answer, now)
	if err != nil || n > 0 {
		return nil, false, err
	}
	_, err = tx.row("SELECT answer FROM retry_marks WHERE key = ?", []any{key}, &answer)
	return answer, err == nil, err
}

// sameBody compares a binding's body hash with b's; a binding moved from
// the version that kept 8 bytes of it compares those.
func sameBody(stored, body []byte) bool {
	if len(stored) == 8 && len(body) > 8 {
		return bytes.Equal(stored, body[:8])
	}
	return bytes.Equal(stored, body)
}

// legacy reports whether a binding's look-up filed under at must also
// look under 0, where the bindings of earlier versions were moved (their
// time unknown), while any of them may be live.
func (s *SQLite) legacy(at, now int64) bool { return at != 0 && now < s.legacyUntil }

// migrateMarks moves what earlier versions kept — the marks and queries
// tables, keyed by text, and the seen table, which held hashes for memory
// — into retry_marks, and query_bindings under at 0, and drops them. It
// returns the latest binding expiry moved, until which look-ups of
// bindings also look there.
func migrateMarks(ctx context.Context, conn *sql.Conn) (until int64, err error) {
	var tables []string
	rows, err := conn.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('marks', 'queries', 'seen')`)
	if err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return 0, fmt.Errorf("store: %w", err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if len(tables) == 0 {
		return 0, nil
	}
	type mark struct {
		key, expires int64
		blob         []byte
		query        bool
	}
	var moved []mark
	read := func(q string, f func(*sql.Rows) error) error {
		rows, err := conn.QueryContext(ctx, q)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := f(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	for _, table := range tables {
		var err error
		switch table {
		case "marks":
			err = read("SELECT key, expires, answer FROM marks", func(r *sql.Rows) error {
				var k string
				var m mark
				err := r.Scan(&k, &m.expires, &m.blob)
				m.key = markKey(k)
				moved = append(moved, m)
				return err
			})
		case "queries":
			err = read("SELECT key, expires, body FROM queries", func(r *sql.Rows) error {
				var k string
				m := mark{query: true}
				err := r.Scan(&k, &m.expires, &m.blob)
				m.key = markKey(k)
				moved = append(moved, m)
				return err
			})
		case "seen":
			err = read("SELECT entries FROM seen ORDER BY seq", func(r *sql.Rows) error {
				var entries []byte
				if err := r.Scan(&entries); err != nil {
					return err
				}
				for len(entries) >= 17 {
					m := mark{key: int64(binary.BigEndian.Uint64(entries[1:9])), expires: int64(binary.BigEndian.Uint64(entries[9:17]))}
					kind := entries[0]
					entries = entries[17:]
					switch {
					case kind == 'q' && len(entries) >= 8:
						m.query, m.blob, entries = true, bytes.Clone(entries[:8]), entries[8:]
					case kind == 'm':
						n, w := binary.Uvarint(entries)
						if w <= 0 || uint64(len(entries)-w) < n {
							return errors.New("a truncated record in seen")
						}
						if n > 0 {
							m.blob = bytes.Clone(entries[w : w+int(n)])
						}
						entries = entries[w+int(n):]
					default:
						return errors.New("a record of unknown kind in seen")
					}
					moved = append(moved, m)
				}
				return nil
			})
		}
		if err != nil && !strings.Contains(err.Error(), "no such table") {
			return 0, fmt.Errorf("store: moving the retry marks of %s: %w", table, err)
		}
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	fail := func(err error) (int64, error) {
		_, _ = conn.ExecContext(ctx, "ROLLBACK")
		return 0, fmt.Errorf("store: moving the retry marks: %w", err)
	}
	for _, m := range moved {
		q := "INSERT OR REPLACE INTO retry_marks(key, expires, answer) VALUES(?, ?, ?)"
		if m.query {
			if m.blob == nil {
				continue
			}
			q = "INSERT OR REPLACE INTO query_bindings(at, key, expires, body) VALUES(0, ?, ?, ?)"
		}
		if _, err := conn.ExecContext(ctx, q, m.key, m.expires, m.blob); err != nil {
			return fail(err)
		}
		if m.query {
			until = max(until, m.expires)
		}
	}
	for _, table := range tables {
		if _, err := conn.ExecContext(ctx, "DROP TABLE IF EXISTS "+table); err != nil {
			return fail(err)
		}
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fail(err)
	}
	return until, nil
}
