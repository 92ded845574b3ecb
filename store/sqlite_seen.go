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
)

// seen is the SQLite store's retry marks and signed-query bindings: what
// every callback with a reply (and every plaintext one) looks up and
// writes. In a table with a key index each would cost two random B-tree
// inserts a callback — the pages a COMMIT and a checkpoint write — which
// measured at two thirds of the store's work. So they are held in memory,
// compact (a 64-bit hash of the key, its expiry, 8 bytes of the body's
// hash: no pointers for the garbage collector to scan), and made durable
// by one append-only row per transaction in the seen table, which packs
// what the transaction's Accepts added (seenLog) and commits with them;
// the rows are read back when the store opens.
//
// The directory is locked to one process (lock_unix.go), so this memory
// is the only copy anyone consults; the store's writer goroutine is the
// only one that touches it, as it is the only one that touches the
// database. A change made by an op is undone when its transaction rolls
// back (txn.undo).
//
// A 64-bit hash of a key is as good as the key here: WeChat's keys are
// not chosen to collide (a chance of 2^-64 per pair), and a collision on
// purpose needs a second preimage of SHA-256's first 64 bits.
type seen struct {
	marks   map[uint64]int64  // retry mark → expiry (Unix ms)
	answers map[uint64][]byte // the passive answer of a mark that has one
	queries map[uint64]boundQuery

	// The marks and the bindings added, each in order, for pruning: the
	// TTLs of one kind are all but constant on a server, so the front
	// expires first. A longer one in front only holds what follows a
	// little longer.
	markQueue, queryQueue expiryQueue
}

// expiryQueue is a list of keys in the order they were added, popped
// from the front.
type expiryQueue struct {
	list []expiring
	head int
}

func (q *expiryQueue) push(e expiring) { q.list = append(q.list, e) }

// pop calls gone for each key at the front that expired by now.
func (q *expiryQueue) pop(now int64, gone func(key uint64)) {
	for q.head < len(q.list) && q.list[q.head].expires <= now {
		gone(q.list[q.head].key)
		q.head++
	}
	// Give back the front once it is most of the list.
	if q.head > 1024 && q.head*2 > len(q.list) {
		q.list = append(q.list[:0:0], q.list[q.head:]...)
		q.head = 0
	}
}

type boundQuery struct {
	expires int64
	body    uint64 // of the body's SHA-256
}

type expiring struct {
	key     uint64
	expires int64
}

func newSeen() *seen {
	return &seen{marks: map[uint64]int64{}, answers: map[uint64][]byte{}, queries: map[uint64]boundQuery{}}
}

// seenKey is the hash a key is kept under.
func seenKey(s string) uint64 {
	h := sha256.Sum256([]byte(s))
	return binary.BigEndian.Uint64(h[:8])
}

// bodyKey is the part of a body's hash a binding keeps.
func bodyKey(hash []byte) uint64 {
	var b [8]byte
	copy(b[:], hash)
	return binary.BigEndian.Uint64(b[:])
}

// mark returns the live mark under key at now, if any, with its answer.
func (s *seen) mark(key uint64, now int64) (answer []byte, ok bool) {
	exp, ok := s.marks[key]
	if !ok || exp <= now {
		return nil, false
	}
	return bytes.Clone(s.answers[key]), true // a retry's to keep
}

// query returns the live binding under key at now, if any.
func (s *seen) query(key uint64, now int64) (boundQuery, bool) {
	q, ok := s.queries[key]
	if !ok || q.expires <= now {
		return boundQuery{}, false
	}
	return q, true
}

// putMark records a mark and returns how to take it back.
func (s *seen) putMark(key uint64, expires int64, answer []byte) (undo func()) {
	prevExp, had := s.marks[key]
	prevAnswer, hadAnswer := s.answers[key]
	s.marks[key] = expires
	if answer != nil {
		s.answers[key] = bytes.Clone(answer) // the caller's buffer is the caller's
	} else {
		delete(s.answers, key)
	}
	s.markQueue.push(expiring{key: key, expires: expires})
	return func() {
		if had {
			s.marks[key] = prevExp
		} else {
			delete(s.marks, key)
		}
		if hadAnswer {
			s.answers[key] = prevAnswer
		} else {
			delete(s.answers, key)
		}
	}
}

// putQuery records a binding and returns how to take it back.
func (s *seen) putQuery(key uint64, q boundQuery) (undo func()) {
	prev, had := s.queries[key]
	s.queries[key] = q
	s.queryQueue.push(expiring{key: key, expires: q.expires})
	return func() {
		if had {
			s.queries[key] = prev
		} else {
			delete(s.queries, key)
		}
	}
}

// prune forgets what expired by now. An entry replaced since (a later
// mark under the same key) stays.
func (s *seen) prune(now int64) {
	s.markQueue.pop(now, func(key uint64) {
		if exp, ok := s.marks[key]; ok && exp <= now {
			delete(s.marks, key)
			delete(s.answers, key)
		}
	})
	s.queryQueue.pop(now, func(key uint64) {
		if q, ok := s.queries[key]; ok && q.expires <= now {
			delete(s.queries, key)
		}
	})
}

// len is how many marks and bindings are held.
func (s *seen) len() int { return len(s.marks) + len(s.queries) }

// seenLog is what a transaction's ops added to seen, packed for the one
// row the transaction writes at its COMMIT (txn.flushSeen): a record is a
// kind byte, the key and the expiry (8 bytes each, big-endian), then a
// query's body (8 bytes) or a mark's answer (a uvarint length and its
// bytes).
type seenLog struct {
	buf     []byte
	expires int64 // the latest expiry in buf
}

const (
	seenMark  byte = 'm'
	seenQuery byte = 'q'
)

func (l *seenLog) mark(key uint64, expires int64, answer []byte) {
	l.buf = append(l.buf, seenMark)
	l.buf = binary.BigEndian.AppendUint64(l.buf, key)
	l.buf = binary.BigEndian.AppendUint64(l.buf, uint64(expires))
	l.buf = binary.AppendUvarint(l.buf, uint64(len(answer)))
	l.buf = append(l.buf, answer...)
	l.expires = max(l.expires, expires)
}

func (l *seenLog) query(key uint64, q boundQuery) {
	l.buf = append(l.buf, seenQuery)
	l.buf = binary.BigEndian.AppendUint64(l.buf, key)
	l.buf = binary.BigEndian.AppendUint64(l.buf, uint64(q.expires))
	l.buf = binary.BigEndian.AppendUint64(l.buf, q.body)
	l.expires = max(l.expires, q.expires)
}

// replay puts the records of one row back in memory.
func (s *seen) replay(row []byte) error {
	for len(row) > 0 {
		if len(row) < 17 {
			return errors.New("a truncated record")
		}
		kind, key, expires := row[0], binary.BigEndian.Uint64(row[1:9]), int64(binary.BigEndian.Uint64(row[9:17]))
		row = row[17:]
		switch kind {
		case seenQuery:
			if len(row) < 8 {
				return errors.New("a truncated record")
			}
			s.putQuery(key, boundQuery{expires: expires, body: binary.BigEndian.Uint64(row[:8])})
			row = row[8:]
		case seenMark:
			n, w := binary.Uvarint(row)
			if w <= 0 || uint64(len(row)-w) < n {
				return errors.New("a truncated record")
			}
			var answer []byte
			if n > 0 {
				answer = row[w : w+int(n)] // putMark copies it
			}
			s.putMark(key, expires, answer)
			row = row[w+int(n):]
		default:
			return fmt.Errorf("a record of unknown kind %q", kind)
		}
	}
	return nil
}

// loadSeen reads the rows of seen into memory, oldest first, and moves in
// what the marks and queries tables of an earlier version hold (then
// drops them).
func loadSeen(ctx context.Context, conn *sql.Conn) (*seen, error) {
	s := newSeen()
	if err := migrateSeen(ctx, conn); err != nil {
		return nil, err
	}
	// Every row, expired or not: whether one is live is decided by the
	// callers' times, as in every other look-up, and the clock of this
	// start may be ahead of theirs. Housekeeping forgets the expired.
	rows, err := conn.QueryContext(ctx, `SELECT seq, entries FROM seen ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("store: reading the retry marks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var entries []byte
		if err := rows.Scan(&seq, &entries); err != nil {
			return nil, fmt.Errorf("store: reading the retry marks: %w", err)
		}
		if err := s.replay(entries); err != nil {
			return nil, fmt.Errorf("store: reading the retry marks: row %d of seen: %w", seq, err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: reading the retry marks: %w", err)
	}
	return s, nil
}

// migrateSeen moves the rows of the marks and queries tables (a store
// written by an earlier version) into seen, and drops them.
func migrateSeen(ctx context.Context, conn *sql.Conn) error {
	var n int
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('marks', 'queries')`).Scan(&n); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if n == 0 {
		return nil
	}
	type row struct {
		key           uint64
		expires, body int64
		answer        []byte
		query         bool
	}
	var moved []row
	read := func(q string, query bool) error {
		rows, err := conn.QueryContext(ctx, q)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var key string
			var r row
			var blob []byte
			if err := rows.Scan(&key, &r.expires, &blob); err != nil {
				return err
			}
			r.key, r.query = seenKey(key), query
			if query {
				r.body = int64(bodyKey(blob))
			} else {
				r.answer = blob
			}
			moved = append(moved, r)
		}
		return rows.Err()
	}
	if err := read(`SELECT key, expires, answer FROM marks`, false); err != nil && !missingTable(err) {
		return fmt.Errorf("store: moving the retry marks: %w", err)
	}
	if err := read(`SELECT key, expires, body FROM queries`, true); err != nil && !missingTable(err) {
		return fmt.Errorf("store: moving the signed queries: %w", err)
	}
	var l seenLog
	for _, r := range moved {
		if r.query {
			l.query(r.key, boundQuery{expires: r.expires, body: uint64(r.body)})
		} else {
			l.mark(r.key, r.expires, r.answer)
		}
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if len(l.buf) > 0 {
		if _, err := conn.ExecContext(ctx, `INSERT INTO seen(expires, entries) VALUES(?, ?)`, l.expires, l.buf); err != nil {
			_, _ = conn.ExecContext(ctx, "ROLLBACK")
			return fmt.Errorf("store: moving the retry marks: %w", err)
		}
	}
	for _, q := range []string{"DROP TABLE IF EXISTS marks", "DROP TABLE IF EXISTS queries", "COMMIT"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			_, _ = conn.ExecContext(ctx, "ROLLBACK")
			return fmt.Errorf("store: moving the retry marks: %w", err)
		}
	}
	return nil
}

func missingTable(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no such table")
}
