package store_test

import (
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/wxreply/wxreply/store"
)

// TestSeenAcrossReopen: the retry marks (with their answers) and the
// signed-query bindings are still there after the store is closed and
// opened again, and still expire.
func TestSeenAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	s := openSQLite(t, store.SQLiteOptions{Dir: dir})
	ctx := t.Context()
	bind := func(s *store.SQLite, now time.Time, mark, query, body string) (store.Accepted, error) {
		return s.Accept(ctx, &store.Batch{Now: now, Dedupe: mark, DedupeTTL: time.Minute, Answer: []byte("answer of " + mark),
			Query: query, QueryBody: []byte(body), QueryTTL: 30 * time.Second,
			Items: []store.NewItem{item(fmt.Sprint("id-", mark, "-", now.UnixMilli()), "u1", nil)}})
	}
	if _, err := bind(s, base, "m1", "q1", "body one"); err != nil {
		t.Fatal(err)
	}
	if _, err := bind(s, base, "m2", "", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSQLite(t, store.SQLiteOptions{Dir: dir})
	a, err := bind(s, base.Add(time.Second), "m1", "q1", "body one")
	if err != nil || !a.Duplicate || string(a.Answer) != "answer of m1" {
		t.Fatalf("the retry after a reopen = %+v, %v; want a duplicate with the first answer", a, err)
	}
	if _, err := bind(s, base.Add(time.Second), "m3", "q1", "another body"); !errors.Is(err, store.ErrQueryReused) {
		t.Fatalf("another body under the bound query after a reopen: %v, want ErrQueryReused", err)
	}
	if a, err := bind(s, base.Add(time.Second), "m2", "", ""); err != nil || !a.Duplicate {
		t.Fatalf("m2 after a reopen = %+v, %v; want a duplicate", a, err)
	}
	// Past their TTLs both are gone, before and after a reopen.
	later := base.Add(2 * time.Minute)
	if a, err := bind(s, later, "m1", "q1", "a third body"); err != nil || a.Duplicate {
		t.Fatalf("m1 past its TTL = %+v, %v; want accepted", a, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSQLite(t, store.SQLiteOptions{Dir: dir, Now: func() time.Time { return later }})
	if a, err := bind(s, later.Add(time.Second), "m1", "q1", "a third body"); err != nil || !a.Duplicate {
		t.Fatalf("the mark taken again at %v, after a reopen = %+v, %v; want a duplicate", later, a, err)
	}
}

// TestSeenRolledBack: a batch whose transaction rolls back leaves no mark
// or binding behind, so WeChat's retry of it is recorded.
func TestSeenRolledBack(t *testing.T) {
	s := openSQLite(t, store.SQLiteOptions{})
	accept(t, s, base, item("taken", "u1", nil))
	ctx := t.Context()
	batch := func(id string) *store.Batch {
		return &store.Batch{Now: base, Dedupe: "m1", DedupeTTL: time.Minute, Query: "q1", QueryBody: []byte("body"), QueryTTL: time.Minute,
			Items: []store.NewItem{item(id, "u1", nil)}}
	}
	if _, err := s.Accept(ctx, batch("taken")); err == nil {
		t.Fatal("an item ID used twice was accepted")
	}
	a, err := s.Accept(ctx, batch("fresh"))
	if err != nil || a.Duplicate {
		t.Fatalf("the retry of a batch that was rolled back = %+v, %v; want it recorded", a, err)
	}
	if n := pending(t, s); n != 2 {
		t.Errorf("Pending = %d, want 2", n)
	}
}

// TestSeenPruned: marks and bindings are deleted once they expire, so
// that the store does not grow with the callbacks of the past.
func TestSeenPruned(t *testing.T) {
	clk := newClock(base)
	s := openSQLite(t, store.SQLiteOptions{Now: clk.Now})
	ctx := t.Context()
	var wg sync.WaitGroup
	for i := range 500 {
		wg.Go(func() {
			if _, err := s.Accept(ctx, &store.Batch{Now: base, Dedupe: fmt.Sprint("m", i), DedupeTTL: time.Minute,
				Query: fmt.Sprint("q", i), QueryBody: []byte("b"), QueryTTL: 30 * time.Second, QueryAt: base}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	rows := func(table string) int {
		n, err := s.CountRows(ctx, table)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if m, q := rows("marks"), rows("bindings"); m != 500 || q != 500 {
		t.Fatalf("rows = %d marks, %d bindings; want 500 each", m, q)
	}
	clk.set(base.Add(45 * time.Second))
	clk.housekept(t)
	if m, q := rows("marks"), rows("bindings"); m != 500 || q != 0 {
		t.Fatalf("past the bindings' TTL: %d marks, %d bindings; want 500 and 0", m, q)
	}
	clk.set(base.Add(2 * time.Minute))
	clk.housekept(t)
	if m, q := rows("marks"), rows("bindings"); m != 0 || q != 0 {
		t.Errorf("past every TTL: %d marks, %d bindings; want none", m, q)
	}
}

// TestSeenFiledByTime: a binding is filed under its query's timestamp,
// and WeChat's retry, under the same query, finds it; a message's mark is
// found by its key alone, whatever time its copy carries.
func TestSeenFiledByTime(t *testing.T) {
	s := openSQLite(t, store.SQLiteOptions{})
	ctx := t.Context()
	signed := base.Add(-3 * time.Second)
	batch := func(now time.Time, body, id string) *store.Batch {
		return &store.Batch{Now: now, Dedupe: "960001", DedupeTTL: time.Minute, Answer: []byte("first"),
			Query: "sig:1700000000:n", QueryBody: []byte(body), QueryTTL: time.Minute, QueryAt: signed,
			Items: []store.NewItem{item(id, "u1", nil)}}
	}
	if a, err := s.Accept(ctx, batch(base, "body", "a")); err != nil || a.Duplicate {
		t.Fatalf("first copy = %+v, %v", a, err)
	}
	if a, err := s.Accept(ctx, batch(base.Add(5*time.Second), "body", "b")); err != nil || !a.Duplicate || string(a.Answer) != "first" {
		t.Fatalf("the retry 5 s later = %+v, %v; want a duplicate with the first answer", a, err)
	}
	if _, err := s.Accept(ctx, batch(base.Add(5*time.Second), "another body", "c")); !errors.Is(err, store.ErrQueryReused) {
		t.Fatalf("another body under the query: %v, want ErrQueryReused", err)
	}
	// A copy of the message under a query of its own (re-signed later).
	again := &store.Batch{Now: base.Add(6 * time.Second), Dedupe: "960001", DedupeTTL: time.Minute,
		Query: "sig:1700000006:m", QueryBody: []byte("another body"), QueryTTL: time.Minute, QueryAt: base.Add(6 * time.Second),
		Items: []store.NewItem{item("d", "u1", nil)}}
	if a, err := s.Accept(ctx, again); err != nil || !a.Duplicate {
		t.Fatalf("the message under another query = %+v, %v; want a duplicate by its MsgId", a, err)
	}
}

// TestSeenMigrated: a store written by the version that kept queries in
// a table keyed by their text opens with them in force, and without that
// table; its marks are the marks of this version.
func TestSeenMigrated(t *testing.T) {
	dir := t.TempDir()
	db, err := sql.Open("sqlite", filepath.Join(dir, "wxreply.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE marks(key TEXT PRIMARY KEY, expires INTEGER NOT NULL, answer BLOB) WITHOUT ROWID`,
		`CREATE INDEX marks_expires ON marks(expires)`,
		`CREATE TABLE queries(key TEXT PRIMARY KEY, body BLOB NOT NULL, expires INTEGER NOT NULL) WITHOUT ROWID`,
		fmt.Sprintf(`INSERT INTO marks VALUES('live', %d, 'its answer'), ('old', %d, NULL)`, base.Add(time.Hour).UnixMilli(), base.Add(-time.Hour).UnixMilli()),
		fmt.Sprintf(`INSERT INTO queries VALUES('sig:1:n', x'%x', %d)`, []byte("body hash of the first"), base.Add(time.Hour).UnixMilli()),
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	s := openSQLite(t, store.SQLiteOptions{Dir: dir, Now: func() time.Time { return base }})
	ctx := t.Context()
	a, err := s.Accept(ctx, &store.Batch{Now: base, Dedupe: "live", DedupeTTL: time.Minute, Items: []store.NewItem{item("a", "u1", nil)}})
	if err != nil || !a.Duplicate || string(a.Answer) != "its answer" {
		t.Fatalf("a mark of the old table = %+v, %v; want a duplicate with its answer", a, err)
	}
	if a, err := s.Accept(ctx, &store.Batch{Now: base, Dedupe: "old", DedupeTTL: time.Minute, Items: []store.NewItem{item("b", "u1", nil)}}); err != nil || a.Duplicate {
		t.Fatalf("an expired mark of the old table = %+v, %v; want accepted", a, err)
	}
	if _, err := s.Accept(ctx, &store.Batch{Now: base, Query: "sig:1:n", QueryBody: []byte("another body"), QueryTTL: time.Minute, QueryAt: base,
		Items: []store.NewItem{item("c", "u1", nil)}}); !errors.Is(err, store.ErrQueryReused) {
		t.Fatalf("another body under a query of the old table: %v, want ErrQueryReused", err)
	}
	for _, table := range []string{"queries", "seen"} {
		if _, err := s.CountRows(ctx, table); err == nil {
			t.Errorf("the old %s table is still there", table)
		}
	}
}

// TestSeenMigratedFromMemory: a store written by the version that held
// marks and bindings in memory, packed in a seen table, opens with its
// bindings in force.
func TestSeenMigratedFromMemory(t *testing.T) {
	dir := t.TempDir()
	db, err := sql.Open("sqlite", filepath.Join(dir, "wxreply.db"))
	if err != nil {
		t.Fatal(err)
	}
	hash := func(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:8] }
	exp := binary.BigEndian.AppendUint64(nil, uint64(base.Add(time.Hour).UnixMilli()))
	entries := append(append(append([]byte{'m'}, hash("live")...), exp...), append(binary.AppendUvarint(nil, 10), "its answer"...)...)
	bodyHash := sha256.Sum256([]byte("the first body"))
	entries = append(append(append(append(entries, 'q'), hash("sig:1:n")...), exp...), bodyHash[:8]...)
	for _, q := range []string{
		`CREATE TABLE seen(seq INTEGER PRIMARY KEY, expires INTEGER NOT NULL, entries BLOB NOT NULL)`,
		fmt.Sprintf(`INSERT INTO seen(expires, entries) VALUES(%d, x'%x')`, base.Add(time.Hour).UnixMilli(), entries),
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	s := openSQLite(t, store.SQLiteOptions{Dir: dir, Now: func() time.Time { return base }})
	ctx := t.Context()
	// Its marks were hashes, and are not carried over (migrateMarks).
	if a, err := s.Accept(ctx, &store.Batch{Now: base, Dedupe: "live", DedupeTTL: time.Minute, Items: []store.NewItem{item("a", "u1", nil)}}); err != nil || a.Duplicate {
		t.Fatalf("a mark of the seen table = %+v, %v; want it not carried over", a, err)
	}
	if _, err := s.Accept(ctx, &store.Batch{Now: base, Query: "sig:1:n", QueryBody: bodyHash[:], QueryTTL: time.Minute, QueryAt: base,
		Items: []store.NewItem{item("b", "u1", nil)}}); err != nil {
		t.Fatalf("the first body again under a query of the seen table: %v, want it taken as the retry", err)
	}
	other := sha256.Sum256([]byte("another body"))
	if _, err := s.Accept(ctx, &store.Batch{Now: base, Query: "sig:1:n", QueryBody: other[:], QueryTTL: time.Minute, QueryAt: base,
		Items: []store.NewItem{item("c", "u1", nil)}}); !errors.Is(err, store.ErrQueryReused) {
		t.Fatalf("another body under a query of the seen table: %v, want ErrQueryReused", err)
	}
}

// TestSeenAnswerIsACopy: the first copy's answer is kept as it was
// accepted, whatever its caller does with the buffer afterwards.
func TestSeenAnswerIsACopy(t *testing.T) {
	s := openSQLite(t, store.SQLiteOptions{})
	buf := []byte("first answer")
	if _, err := s.Accept(t.Context(), &store.Batch{Now: base, Dedupe: "m", DedupeTTL: time.Minute, Answer: buf}); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXX") // the caller reuses its buffer
	a, err := s.Accept(t.Context(), &store.Batch{Now: base, Dedupe: "m", DedupeTTL: time.Minute})
	if err != nil || string(a.Answer) != "first answer" {
		t.Errorf("retry answer = %q, %v; want %q", a.Answer, err, "first answer")
	}
}

// TestSeenHorizon: a store whose table of bindings is full forgets the
// oldest, and refuses the queries signed as early as a binding it forgot
// while in force, since it can no longer tell them from a replay; later
// ones, and the bindings still held, are as before. The same after a
// reopen, which holds the newest bindings of the log.
func TestSeenHorizon(t *testing.T) {
	dir := t.TempDir()
	s := openSQLite(t, store.SQLiteOptions{Dir: dir, BindingSlots: 4})
	ctx := t.Context()
	n := 0
	bind := func(s *store.SQLite, query string, signed time.Time, body string) error {
		n++
		_, err := s.Accept(ctx, &store.Batch{Now: base.Add(10 * time.Second), Query: query, QueryBody: []byte(body),
			QueryTTL: time.Minute, QueryAt: signed, Items: []store.NewItem{item(fmt.Sprint("id", n), "u1", nil)}})
		return err
	}
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	for i := range 5 { // signed at base+0s … base+4s; the first is pushed out
		if err := bind(s, fmt.Sprint("q", i), at(i), "body"); err != nil {
			t.Fatal(err)
		}
	}
	if err := bind(s, "q0", at(0), "another body"); !errors.Is(err, store.ErrQueryReused) {
		t.Errorf("another body under the binding pushed out: %v, want ErrQueryReused", err)
	}
	if err := bind(s, "fresh", at(0), "body"); !errors.Is(err, store.ErrQueryReused) {
		t.Errorf("a new query signed as early as the binding pushed out: %v, want ErrQueryReused", err)
	}
	if err := bind(s, "q1", at(1), "another body"); !errors.Is(err, store.ErrQueryReused) {
		t.Errorf("another body under a binding still held: %v, want ErrQueryReused", err)
	}
	if err := bind(s, "q1", at(1), "body"); err != nil {
		t.Errorf("the same body under a binding still held (WeChat's retry): %v", err)
	}
	if err := bind(s, "later", at(1), "body"); err != nil {
		t.Errorf("a new query signed after the binding pushed out: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The log holds q0…q4 and later; the newest four are held again.
	s = openSQLite(t, store.SQLiteOptions{Dir: dir, BindingSlots: 4, Now: func() time.Time { return base.Add(10 * time.Second) }})
	if err := bind(s, "q1", at(1), "another body"); !errors.Is(err, store.ErrQueryReused) {
		t.Errorf("after a reopen, another body under a binding not held (signed at the horizon): %v, want ErrQueryReused", err)
	}
	if err := bind(s, "q4", at(4), "another body"); !errors.Is(err, store.ErrQueryReused) {
		t.Errorf("after a reopen, another body under a binding held: %v, want ErrQueryReused", err)
	}
	if err := bind(s, "fresh2", at(2), "body"); err != nil {
		t.Errorf("after a reopen, a new query signed after the horizon: %v", err)
	}
}
