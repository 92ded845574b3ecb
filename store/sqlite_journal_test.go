package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/wxreply/wxreply/store"
)

// journaledPair is two directory stores given the same operations: one
// is closed as a kill -9 leaves it (its open transaction lost, its
// journal kept) and opened again; the other is closed cleanly at the same
// moments. After the reopen, the first holds what it holds because it ran
// its journal again.
type journaledPair struct {
	t          *testing.T
	dirs       [2]string
	s          [2]*store.SQLite
	commitEach time.Duration
}

func newJournaledPair(t *testing.T, commitEach time.Duration) *journaledPair {
	p := &journaledPair{t: t, dirs: [2]string{t.TempDir(), t.TempDir()}, commitEach: commitEach}
	for i := range p.s {
		p.s[i] = p.open(i)
	}
	return p
}

func (p *journaledPair) open(i int) *store.SQLite {
	// Short lifetimes, so that the pruning the test runs deletes items,
	// marks, bindings, windows and early reports.
	s, err := store.OpenSQLite(store.SQLiteOptions{Dir: p.dirs[i], Logger: quiet, CommitEvery: p.commitEach, Now: func() time.Time { return base },
		Retention: 10 * time.Minute, WindowTTL: 30 * time.Minute})
	if err != nil {
		p.t.Fatalf("OpenSQLite: %v", err)
	}
	return s
}

// crash closes the first store losing its transaction, the second
// cleanly, and opens both again.
func (p *journaledPair) crash() {
	p.t.Helper()
	if err := p.s[0].CloseLosingTxn(); err != nil {
		p.t.Fatal(err)
	}
	if err := p.s[1].Close(); err != nil {
		p.t.Fatal(err)
	}
	p.s[0], p.s[1] = p.open(0), p.open(1)
}

func (p *journaledPair) same(when string) {
	p.t.Helper()
	var dumps [2]string
	for i, s := range p.s {
		d, err := s.Dump(p.t.Context())
		if err != nil {
			p.t.Fatal(err)
		}
		dumps[i] = d
	}
	if dumps[0] != dumps[1] {
		p.t.Fatalf("%s: the store that ran its journal again differs from the one that committed:\n%s\n---\n%s", when, dumps[0], dumps[1])
	}
}

func (p *journaledPair) close() {
	for _, s := range p.s {
		s.Close()
	}
}

// TestJournalRunAgain: random operations of every kind, with crashes
// between them; after each, the store that lost its open transaction
// holds exactly what the store that committed does, and answered the
// same all along. Run with commits every few batches and with none before
// the crash.
func TestJournalRunAgain(t *testing.T) {
	for _, every := range []time.Duration{time.Millisecond, time.Hour} {
		t.Run(every.String(), func(t *testing.T) {
			p := newJournaledPair(t, every)
			defer p.close()
			rng := rand.New(rand.NewPCG(7, uint64(every)))
			ctx := t.Context()
			now := base
			var held []store.Claim // claims of the first store's answers (the same in both)
			n := 0
			users := []string{"u1", "u2", "u3", "u4"}
			for step := range 400 {
				now = now.Add(time.Duration(rng.IntN(90)) * time.Second)
				var answers [2]string
				switch k := rng.IntN(14); {
				case k < 4:
					n++
					u := users[rng.IntN(len(users))]
					b := &store.Batch{Now: now, Touch: u, Dedupe: fmt.Sprint("m", rng.IntN(40)), DedupeTTL: 5 * time.Minute, Answer: []byte("a"),
						Items: []store.NewItem{item(fmt.Sprint("i", n), u, nil)}}
					if rng.IntN(2) == 0 {
						b.Query, b.QueryBody, b.QueryTTL, b.QueryAt = fmt.Sprint("q", rng.IntN(40)), []byte(fmt.Sprint("body", rng.IntN(2))), 5*time.Minute, now
					}
					if rng.IntN(4) == 0 {
						b.IdemKey, b.IdemFingerprint, b.IdemTTL = fmt.Sprint("k", rng.IntN(10)), []byte{byte(rng.IntN(2))}, time.Hour
					}
					if rng.IntN(4) == 0 {
						b.SetState = &store.UserState{OpenID: u, Name: "asked", TTL: time.Hour}
					}
					if rng.IntN(3) == 0 {
						n++
						b.Items = append(b.Items, item(fmt.Sprint("i", n), u, nil))
					}
					for i, s := range p.s {
						a, err := s.Accept(ctx, b)
						answers[i] = fmt.Sprint(a, errors.Is(err, store.ErrQueryReused), errors.Is(err, store.ErrIdempotencyConflict), err == nil)
					}
				case k < 6:
					max := 1 + rng.IntN(2)
					for i, s := range p.s {
						cs, next, err := s.Claim(ctx, now, max, time.Minute)
						if err != nil {
							t.Fatal(err)
						}
						if i == 0 {
							held = append(held, cs...)
						}
						answers[i] = fmt.Sprint(claimIDs(cs), next)
					}
				case k < 9 && len(held) > 0:
					j := rng.IntN(len(held))
					c := held[j]
					held = append(held[:j], held[j+1:]...)
					kind, msgid := rng.IntN(4), int64(rng.IntN(3))
					for i, s := range p.s {
						var err error
						switch kind {
						case 0:
							_, err = s.Complete(ctx, c, store.Final{Now: now, Delivered: true, Attempts: 1, MsgID: msgid})
						case 1:
							_, err = s.Complete(ctx, c, store.Final{Now: now, Reason: "refused", ErrCode: 40003, Attempts: 1})
						case 2:
							err = s.Retry(ctx, c, store.Retry{Now: now, At: now.Add(time.Minute), Attempts: 1, LastError: "busy"})
						case 3:
							err = s.Release(ctx, c, now)
						}
						answers[i] = fmt.Sprint(errors.Is(err, store.ErrLeaseLost), err == nil)
					}
				case k == 9:
					u := users[rng.IntN(len(users))]
					for i, s := range p.s {
						err := s.CloseWindow(ctx, u, now, now)
						lost, err2 := s.Extend(ctx, held, now.Add(time.Minute))
						answers[i] = fmt.Sprint(err, lost, err2)
					}
				case k == 10:
					msgid := int64(rng.IntN(3))
					for i, s := range p.s {
						st, ok, err := s.TemplateFinished(ctx, msgid, "success", now)
						answers[i] = fmt.Sprint(st.ID, ok, err)
						if err := s.PutMedia(ctx, fmt.Sprint("f", step%3), store.Media{ID: "m", Size: 1, Expires: now.Add(time.Hour)}); err != nil {
							t.Fatal(err)
						}
					}
				case k == 11:
					for i, s := range p.s {
						answers[i] = fmt.Sprint(s.Pause(ctx, now.Add(30*time.Second)), s.DeleteMedia(ctx, "f1"))
					}
				default:
					for i, s := range p.s {
						answers[i] = fmt.Sprint(s.Prune(ctx, now))
					}
				}
				if answers[0] != answers[1] {
					t.Fatalf("step %d: the stores answered %s and %s", step, answers[0], answers[1])
				}
				if rng.IntN(25) == 0 {
					p.crash()
					p.same(fmt.Sprintf("after the crash at step %d", step))
				}
			}
			p.crash()
			p.same("at the end")
		})
	}
}

// TestJournalRecordsHeld: a journal whose records the database already
// holds (a crash between the COMMIT and emptying the journal) is not run
// twice, and a torn last record is cut off.
func TestJournalRecordsHeld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "wxreply.journal")
	s := openSQLite(t, store.SQLiteOptions{Dir: dir, CommitEvery: time.Hour})
	accept(t, s, base, item("a", "u1", nil), item("b", "u2", nil))
	if err := s.CloseLosingTxn(); err != nil {
		t.Fatal(err)
	}
	journal, err := os.ReadFile(path)
	if err != nil || len(journal) == 0 {
		t.Fatalf("the journal after a batch: %d bytes, %v; want the batch", len(journal), err)
	}
	s = openSQLite(t, store.SQLiteOptions{Dir: dir})
	if n := pending(t, s); n != 2 {
		t.Fatalf("after the journal ran again: %d pending, want 2", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The journal as it was, and the start of another record.
	if err := os.WriteFile(path, append(bytes.Clone(journal), journal[:len(journal)/2]...), 0o600); err != nil {
		t.Fatal(err)
	}
	s = openSQLite(t, store.SQLiteOptions{Dir: dir})
	if n := pending(t, s); n != 2 {
		t.Errorf("after a reopen with records already held: %d pending, want 2", n)
	}
	accept(t, s, base, item("c", "u3", nil))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
		t.Errorf("the journal after a clean close: %v, %v; want it empty", fi.Size(), err)
	}
	s = openSQLite(t, store.SQLiteOptions{Dir: dir})
	if n := pending(t, s); n != 3 {
		t.Errorf("after a clean close and a reopen: %d pending, want 3", n)
	}
}

// TestJournalOfAnotherState: a journal that does not continue the
// database (the database was put back from a copy taken before it) is
// set aside, not run, and the store opens with the copy's state.
func TestJournalOfAnotherState(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "wxreply.db")
	s := openSQLite(t, store.SQLiteOptions{Dir: dir})
	accept(t, s, base, item("a", "u1", nil))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	backup, err := os.ReadFile(db) // a clean close leaves the database whole
	if err != nil {
		t.Fatal(err)
	}
	s = openSQLite(t, store.SQLiteOptions{Dir: dir})
	accept(t, s, base, item("b", "u1", nil))
	if err := s.Close(); err != nil { // committed: the journal is emptied
		t.Fatal(err)
	}
	// No commit comes before the close that loses the transaction. (A
	// store committing every millisecond, waited on for b, could commit
	// d too before that close: a flake under load.)
	s = openSQLite(t, store.SQLiteOptions{Dir: dir, CommitEvery: time.Hour})
	accept(t, s, base, item("d", "u1", nil)) // the batch after the last commit: in the journal alone
	if err := s.CloseLosingTxn(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{db, db + "-wal", db + "-shm"} {
		os.Remove(f)
	}
	if err := os.WriteFile(db, backup, 0o600); err != nil {
		t.Fatal(err)
	}
	s = openSQLite(t, store.SQLiteOptions{Dir: dir})
	if n := pending(t, s); n != 1 {
		t.Errorf("the copy put back: %d pending, want its 1", n)
	}
	aside, _ := filepath.Glob(filepath.Join(dir, "wxreply.journal.*"))
	if len(aside) != 1 {
		t.Errorf("journals set aside: %q, want one", aside)
	}
}

// TestJournalCommitFails: when SQLite cannot commit, the batches since
// the last commit, already answered, are run again from the journal into
// a new transaction; while that fails too, the store refuses every
// operation, and nothing answered is lost.
func TestJournalCommitFails(t *testing.T) {
	dir := t.TempDir()
	s := openSQLite(t, store.SQLiteOptions{Dir: dir, CommitEvery: time.Millisecond})
	ctx := t.Context()
	if _, err := s.Accept(ctx, &store.Batch{Now: base, Query: "q1", QueryBody: []byte("body"), QueryTTL: time.Hour, QueryAt: base,
		Items: []store.NewItem{item("a", "u1", nil)}}); err != nil {
		t.Fatal(err)
	}
	s.FailCommits(2) // the commit, and the commit after running the journal again
	refused := false
	for deadline := time.Now().Add(10 * time.Second); !refused; {
		_, err := s.Accept(ctx, &store.Batch{Now: base, Items: []store.NewItem{item(fmt.Sprint("x", time.Now().UnixNano()), "u2", nil)}})
		refused = err != nil
		if time.Now().After(deadline) {
			t.Fatal("a store whose commits fail went on accepting")
		}
	}
	if s.Healthy() == nil {
		t.Error("Healthy is nil while commits fail")
	}
	// The next attempt (the writer tries every second) succeeds.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := s.Accept(ctx, &store.Batch{Now: base, Items: []store.NewItem{item("b", "u1", nil)}}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the store did not recover once commits succeed")
		}
		runtime.Gosched()
	}
	if _, err := s.Accept(ctx, &store.Batch{Now: base, Query: "q1", QueryBody: []byte("another"), QueryTTL: time.Hour, QueryAt: base,
		Items: []store.NewItem{item("c", "u1", nil)}}); !errors.Is(err, store.ErrQueryReused) {
		t.Errorf("the binding of a batch run again: %v, want ErrQueryReused", err)
	}
	if err := s.CloseLosingTxn(); err != nil {
		t.Fatal(err)
	}
	s = openSQLite(t, store.SQLiteOptions{Dir: dir})
	for _, id := range []string{"a", "b"} {
		if st, ok, err := s.Status(ctx, id); err != nil || !ok || st.State != store.StateQueued {
			t.Errorf("%s after the failed commits and a crash: %+v, %v, %v; want it queued", id, st, ok, err)
		}
	}
	if st, ok, _ := s.Status(ctx, "c"); ok {
		t.Errorf("the refused batch was recorded: %+v", st)
	}
}

// TestJournalAfterPruning: batches that followed a pruning in the same
// transaction are run again on what the pruning left: an item accepted
// after the newest one was pruned takes its seq, and so does the record
// of its delivery; an ID used again after its item was pruned is taken.
func TestJournalAfterPruning(t *testing.T) {
	for _, id := range []string{"b", "a"} {
		t.Run("new item "+id, func(t *testing.T) {
			dir := t.TempDir()
			ctx := t.Context()
			clk := newClock(base)
			o := store.SQLiteOptions{Dir: dir, Logger: quiet, CommitEvery: time.Hour, Retention: time.Hour, Now: clk.Now}
			s := openSQLite(t, o)
			accept(t, s, base, item("a", "u1", nil))
			complete(t, s, claim(t, s, base)[0], base)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			later := base.Add(2 * time.Hour)
			clk.set(later)
			s = openSQLite(t, o)
			clk.housekept(t) // prunes "a", the newest item, in the open transaction
			if n, err := s.CountRows(ctx, "items"); err != nil || n != 0 {
				t.Fatalf("after the pruning: %d items, %v", n, err)
			}
			accept(t, s, later, item(id, "u1", nil))
			c := claim(t, s, later)
			if len(c) != 1 {
				t.Fatalf("claimed %d, want the new item", len(c))
			}
			complete(t, s, c[0], later)
			if err := s.CloseLosingTxn(); err != nil {
				t.Fatal(err)
			}
			s = openSQLite(t, o)
			if st, ok, err := s.Status(ctx, id); err != nil || !ok || st.State != store.StateDelivered {
				t.Errorf("the item delivered before the crash: %+v, %v, %v; want it delivered (not sent again)", st, ok, err)
			}
		})
	}
}
