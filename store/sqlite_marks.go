package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// The SQLite store's retry marks and signed-query bindings: what every
// callback with a reply (and every plaintext one) looks up and writes.
// Both are kept in the store, so that they survive a restart and memory
// does not grow with the callbacks.
//
// A mark is keyed by its text (marks, with an index by expiry): a
// message's retries are recognised by its MsgId alone, and WeChat's
// MsgIds grow with time, so new marks land near the end of the table.
// A binding's key starts with the signature, as random as a key gets, so
// bindings are a log looked up in memory (sqlite_bindings.go), keyed by a
// 64-bit SHA-256 prefix of the query's text.
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
// there; a live one with another body is ErrQueryReused, and so is a
// query signed before the horizon (sqlite_bindings.go), and nothing is
// written. The binding goes into the log now, and into the table in
// memory once the transaction commits.
func (s *SQLite) bindQuery(tx *txn, b *Batch, now int64) error {
	nb := binding{key: uint64(markKey(b.Query)), body: bodyTag(b.QueryBody), expires: expirySeconds(ms(b.Now.Add(b.QueryTTL)))}
	if at := markAt(b.QueryAt); at > 0 && at <= math.MaxUint32 {
		nb.at = uint32(at)
	}
	same := func(old binding) error {
		if old.body != nb.body {
			return ErrQueryReused
		}
		return nil
	}
	for i := len(tx.bound) - 1; i >= 0; i-- { // this transaction's own
		if old := tx.bound[i]; old.key == nb.key && old.live(now) {
			return same(old.binding)
		}
	}
	if old, ok := s.bindings.find(nb.key); ok && old.live(now) {
		return same(old)
	}
	if nb.at != 0 && nb.at <= s.bindings.horizon {
		return fmt.Errorf("%w: it was signed before the oldest binding this store holds", ErrQueryReused)
	}
	if err := tx.exec("INSERT INTO bindings(key, body, at, expires) VALUES(?, ?, ?, ?)",
		int64(nb.key), int64(nb.body), nb.at, nb.expires); err != nil {
		return err
	}
	tx.bound = append(tx.bound, madeBinding{nb, now})
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

// migrateBindings moves the bindings that earlier versions kept into
// the log: the queries table (keyed by text), the seen table (which held
// hashes in memory, packed) and query_bindings (keyed by time and hash),
// and drops those tables. The bindings of the first two are moved with
// their time unknown (0). The seen table's marks were hashes, and marks
// are kept by their text: they are not moved, so a WeChat retry of a
// callback answered in the last minutes before the upgrade from that
// version may be answered again (seen existed only between two commits
// of one day's work).
func migrateBindings(ctx context.Context, conn *sql.Conn) error {
	var tables []string
	rows, err := conn.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('queries', 'seen', 'query_bindings')`)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return fmt.Errorf("store: %w", err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if len(tables) == 0 {
		return nil
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
				var expires int64
				var body []byte
				err := r.Scan(&k, &expires, &body)
				moved = append(moved, binding{key: uint64(markKey(k)), body: bodyTag(body), expires: expirySeconds(expires)})
				return err
			})
		case "query_bindings":
			err = read("SELECT at, key, expires, body FROM query_bindings ORDER BY at", func(r *sql.Rows) error {
				var at, key, expires int64
				var body []byte
				err := r.Scan(&at, &key, &expires, &body)
				moved = append(moved, binding{key: uint64(key), body: bodyTag(body), at: uint32(max(at, 0)), expires: expirySeconds(expires)})
				return err
			})
		case "seen":
			err = read("SELECT entries FROM seen ORDER BY seq", func(r *sql.Rows) error {
				var entries []byte
				if err := r.Scan(&entries); err != nil {
					return err
				}
				for len(entries) >= 17 {
					kind, key, expires := entries[0], binary.BigEndian.Uint64(entries[1:9]), int64(binary.BigEndian.Uint64(entries[9:17]))
					entries = entries[17:]
					switch {
					case kind == 'q' && len(entries) >= 8:
						moved = append(moved, binding{key: key, body: bodyTag(entries[:8]), expires: expirySeconds(expires)})
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
			return fmt.Errorf("store: moving the signed queries of %s: %w", table, err)
		}
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	fail := func(err error) error {
		_, _ = conn.ExecContext(ctx, "ROLLBACK")
		return fmt.Errorf("store: moving the signed queries: %w", err)
	}
	for _, b := range moved {
		if _, err := conn.ExecContext(ctx, "INSERT INTO bindings(key, body, at, expires) VALUES(?, ?, ?, ?)",
			int64(b.key), int64(b.body), b.at, b.expires); err != nil {
			return fail(err)
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
	return nil
}

// loadBindings fills t with the newest bindings of the log, oldest first
// (whether one is still in force is up to the batch that looks it up:
// pruning keeps the log to about their lifetime); the signed time of the
// newest binding in force at now that it had no room for is its horizon.
func loadBindings(ctx context.Context, conn *sql.Conn, t *bindingTable, now int64) error {
	var horizon sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT MAX(at) FROM (SELECT at, expires FROM bindings ORDER BY seq DESC LIMIT -1 OFFSET ?) WHERE expires * 1000 > ?",
		len(t.ring), now).Scan(&horizon); err != nil {
		return fmt.Errorf("store: reading the signed queries: %w", err)
	}
	rows, err := conn.QueryContext(ctx, "SELECT key, body, at, expires FROM (SELECT seq, key, body, at, expires FROM bindings ORDER BY seq DESC LIMIT ?) ORDER BY seq",
		len(t.ring))
	if err != nil {
		return fmt.Errorf("store: reading the signed queries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var key, body int64
		var b binding
		if err := rows.Scan(&key, &body, &b.at, &b.expires); err != nil {
			return fmt.Errorf("store: reading the signed queries: %w", err)
		}
		b.key, b.body = uint64(key), uint64(body)
		t.add(b, now)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: reading the signed queries: %w", err)
	}
	t.horizon = max(t.horizon, uint32(max(horizon.Int64, 0)))
	return nil
}
