package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The SQLite store's retry marks and signed-query bindings: what every
// callback with a reply (and every plaintext one) looks up and writes.
// Both live in the store, not in memory, so that memory does not grow
// with the callbacks.
//
// A mark is keyed by its text (marks, with an index by expiry): a
// message's retries are recognised by its MsgId alone, and WeChat's
// MsgIds grow with time, so new marks land near the end of the table.
// A binding's key starts with the signature, as random as a key gets: in
// a table keyed by it, with an index by expiry, a binding cost two random
// B-tree inserts a callback — the pages a COMMIT and a checkpoint write.
// So a binding is filed under (at, key): at is the query's signed
// timestamp, part of the query, and key a 64-bit SHA-256 prefix of the
// query's text. Bindings then arrive in time order, and pruning deletes
// the oldest rows without an index by expiry.
//
// A 64-bit hash of a key is as good as the key here: WeChat's keys are
// not chosen to collide (a chance of 2^-64 per pair), and a collision on
// purpose needs a second preimage of SHA-256's first 64 bits.

// markKey is the hash a binding (or, for touch, an openid) is kept under.
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
	n, err := tx.execN(`INSERT INTO marks(key, expires, answer) VALUES(?, ?, ?)
		ON CONFLICT(key) DO UPDATE SET expires = excluded.expires, answer = excluded.answer WHERE marks.expires <= ?`,
		b.Dedupe, ms(b.Now.Add(b.DedupeTTL)), b.Answer, now)
	if err != nil || n > 0 {
		return nil, false, err
	}
	_, err = tx.row("SELECT answer FROM marks WHERE key = ?", []any{b.Dedupe}, &answer)
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

// migrateMarks moves the bindings that earlier versions kept — the
// queries table, keyed by text, and the seen table, which held hashes
// for memory — into query_bindings under at 0, and drops those tables. It
// returns the latest expiry moved, until which look-ups also look there.
// The seen table's marks were hashes, and marks are kept by their text
// now: they are not moved, so a WeChat retry of a callback answered in
// the last minutes before the upgrade to this version may be answered
// again (seen existed only between two commits of one day's work).
func migrateMarks(ctx context.Context, conn *sql.Conn) (until int64, err error) {
	var tables []string
	rows, err := conn.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('queries', 'seen')`)
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
	type binding struct {
		key, expires int64
		body         []byte
	}
	var moved []binding
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
		case "queries":
			err = read("SELECT key, expires, body FROM queries", func(r *sql.Rows) error {
				var k string
				var m binding
				err := r.Scan(&k, &m.expires, &m.body)
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
					kind, key, expires := entries[0], int64(binary.BigEndian.Uint64(entries[1:9])), int64(binary.BigEndian.Uint64(entries[9:17]))
					entries = entries[17:]
					switch {
					case kind == 'q' && len(entries) >= 8:
						moved = append(moved, binding{key: key, expires: expires, body: bytes.Clone(entries[:8])})
						entries = entries[8:]
					case kind == 'm':
						n, w := binary.Uvarint(entries)
						if w <= 0 || uint64(len(entries)-w) < n {
							return errors.New("a truncated record in seen")
						}
						entries = entries[w+int(n):]
					default:
						return errors.New("a record of unknown kind in seen")
					}
				}
				return nil
			})
		}
		if err != nil {
			return 0, fmt.Errorf("store: moving the signed queries of %s: %w", table, err)
		}
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	fail := func(err error) (int64, error) {
		_, _ = conn.ExecContext(ctx, "ROLLBACK")
		return 0, fmt.Errorf("store: moving the signed queries: %w", err)
	}
	for _, m := range moved {
		if _, err := conn.ExecContext(ctx, "INSERT OR REPLACE INTO query_bindings(at, key, expires, body) VALUES(0, ?, ?, ?)",
			m.key, m.expires, m.body); err != nil {
			return fail(err)
		}
		until = max(until, m.expires)
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
