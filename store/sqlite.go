package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	sqlite "modernc.org/sqlite" // the database/sql driver "sqlite", pure Go
	sqlite3 "modernc.org/sqlite/lib"
)

// The embedded store: SQLite through modernc.org/sqlite (no cgo, so the
// static build stays), in WAL mode, written by one goroutine. Every
// operation, read or write, is a closure run by that goroutine with
// whatever other operations were waiting, as one batch; each caller is
// answered only once its batch is durable. In a directory, that is once
// the batch is in the journal (sqlite_journal.go), and SQLite commits the
// batches of up to CommitEvery at once; in memory, each batch is
// committed.
//
// synchronous=NORMAL: in WAL mode a committed transaction survives the
// process's death (kill -9, a panic) because it is in the WAL file, as a
// batch does once it is in the journal; only a power cut or a kernel
// crash may lose the last ones, which is what the contract allows.

// SQLiteOptions configures OpenSQLite.
type SQLiteOptions struct {
	// Dir is the store's directory, created when missing; "" keeps the
	// database in memory.
	Dir string

	// Retention is how long an ended item stays for Status; default
	// DefaultRetention.
	Retention time.Duration

	// WindowTTL is the length of the customer-service window; default
	// 48 hours.
	WindowTTL time.Duration

	// CommitEvery is how long the writer's transaction stays open, its
	// batches durable in the journal (sqlite_journal.go); default
	// journalCommitEvery.
	CommitEvery time.Duration

	// BindingSlots is how many signed-query bindings are held in memory;
	// default DefaultBindingSlots (sqlite_bindings.go).
	BindingSlots int

	// MaxPages caps the database's size in pages (4 KiB each), so that
	// tests can fill it the way a full disk would; 0: no cap.
	MaxPages int

	Logger *slog.Logger // nil: slog.Default()
	Now    func() time.Time
}

// DefaultRetention is how long an ended item's status is kept.
const DefaultRetention = 24 * time.Hour

// earlyTemplateTTL is how long a TEMPLATESENDJOBFINISH event for an
// unknown msgid waits for its send to be recorded. Events of template
// messages sent by other systems of the account never are, so it is short.
const earlyTemplateTTL = time.Minute

// slowCommit is how long a transaction may take before it is logged: a
// callback waits for it inside WeChat's five seconds.
const slowCommit = 100 * time.Millisecond

// maxBatch bounds the operations of one transaction, so that a caller
// waits for at most one long COMMIT.
const maxBatch = 512

// probeBytes is the room the health probe asks for: a batch of a few
// messages. A store that has less cannot be said to accept callbacks.
const probeBytes = 64 << 10

// pruneEvery is how often ended items and expired marks are deleted;
// pruneRows bounds the rows one pruning transaction deletes from a table.
const (
	pruneEvery = 10 * time.Second
	pruneRows  = 1000
	pruneGap   = 5 * time.Millisecond
)

// SQLite is the embedded Store.
type SQLite struct {
	o    SQLiteOptions
	log  *slog.Logger
	db   *sql.DB
	conn *sql.Conn // the one connection: an in-memory database lives in it

	lock *os.File // the directory's lock, nil in memory

	ops          chan *op
	stopped      chan struct{} // closed by Close
	done         chan struct{} // closed when the writer returned
	checkpointed chan struct{} // closed when the checkpointer returned
	closeMu      sync.Once

	health         atomic.Pointer[error] // nil: writable; see Healthy
	lose           atomic.Bool           // tests: Close loses the open transaction, as a kill -9 would
	walFrames      atomic.Int64          // the WAL's pages at the checkpointer's last pass
	noCheckpointer atomic.Bool           // the checkpointer could not start: the writer checkpoints after each commit
	failCommit     atomic.Int32          // tests: the next commits fail
	stats          counters

	// Owned by the writer goroutine.
	journal          *journal        // nil in memory: each batch is committed (sqlite_journal.go)
	inTxn            bool            // the journaled transaction is open
	txnBegan         time.Time       // when it began
	broken           error           // a commit failed and the journal could not be run again: every operation fails
	writerCheckpoint time.Time       // when the writer last checkpointed (checkpointDue)
	lastRecover      time.Time       // when recover last ran: it runs again a second later
	bindings         *bindingTable   // the signed queries' bindings (sqlite_bindings.go)
	touched          map[int64]int64 // windows written lately: see touch
	lastForget       time.Time       // when touched was last cleared of the old
	stmts            map[string]*sql.Stmt
	lastPrune        time.Time
	windowCursor     string    // where sweepWindows goes on
	pruneBehind      bool      // the last chunk left more to prune
	lastChunk        time.Time // when it ran
}

var _ Store = (*SQLite)(nil)

// op is one operation for the writer. fn runs inside the batch's
// transaction and must leave no change behind when it returns a logical
// error (ErrLeaseLost, ErrIdempotencyConflict): those are the caller's
// answer, not the transaction's failure.
type op struct {
	ctx   context.Context
	kind  string // the Store method, for the slow-transaction log line
	fn    func(tx *txn) error
	rec   *opRec // a write operation to journal; nil for reads and housekeeping
	write bool
	err   error
	done  chan struct{}
}

// OpenSQLite opens (creating when needed) the store in o.Dir, or in
// memory. A directory is locked: a second process opening it fails at
// once instead of corrupting the order of the first's lanes.
func OpenSQLite(o SQLiteOptions) (*SQLite, error) {
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.WindowTTL <= 0 {
		o.WindowTTL = 48 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CommitEvery <= 0 {
		o.CommitEvery = journalCommitEvery
	}
	s := &SQLite{
		o: o, log: o.Logger,
		ops:          make(chan *op, 4*maxBatch),
		stopped:      make(chan struct{}),
		done:         make(chan struct{}),
		checkpointed: make(chan struct{}),
		stmts:        make(map[string]*sql.Stmt),
		touched:      make(map[int64]int64),
		bindings:     newBindingTable(o.BindingSlots),
	}
	dsn := "file::memory:"
	if o.Dir != "" {
		if err := os.MkdirAll(o.Dir, 0o750); err != nil {
			return nil, fmt.Errorf("store directory %s: %w", o.Dir, err)
		}
		lock, err := lockDir(o.Dir)
		if err != nil {
			return nil, err
		}
		s.lock = lock
		// A URI, its path escaped: a directory named with '?', '#' or
		// '%' must not be read as parameters ("?mode=memory" would
		// silently keep nothing).
		dsn = "file:" + (&url.URL{Path: filepath.Join(o.Dir, "wxreply.db")}).EscapedPath()
	}
	if err := s.open(dsn); err != nil {
		s.release()
		return nil, err
	}
	go s.writer()
	if o.Dir != "" {
		go s.checkpointer()
	} else {
		close(s.checkpointed)
	}
	return s, nil
}

// pragmas are run on the connection before anything else.
var pragmas = []string{
	"PRAGMA journal_mode=WAL",
	"PRAGMA synchronous=NORMAL",
	"PRAGMA busy_timeout=5000",
	"PRAGMA foreign_keys=OFF",
	"PRAGMA temp_store=MEMORY",
	"PRAGMA cache_size=-65536", // 64 MB of page cache: a backlog of 100,000s of replies stays in it
	// In a directory, a connection of its own checkpoints beside the
	// writer (checkpointer), and the writer itself now and then
	// (checkpointDue); in memory there is no WAL.
	"PRAGMA wal_autocheckpoint=0",
	"PRAGMA journal_size_limit=67108864",
}

func (s *SQLite) open(dsn string) error {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	db.SetMaxOpenConns(1)
	if s.o.Dir != "" {
		db.SetMaxOpenConns(2) // the writer's and the checkpointer's
	}
	s.db = db
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		return s.openErr(err)
	}
	s.conn = conn
	stmts := append([]string{}, pragmas...)
	if s.o.MaxPages > 0 {
		stmts = append(stmts, fmt.Sprintf("PRAGMA max_page_count=%d", s.o.MaxPages))
	}
	stmts = append(stmts, schema...)
	for _, q := range stmts {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return s.openErr(fmt.Errorf("%s: %w", q, err))
		}
	}
	// The lock proves that no other process holds a lease: every lane
	// claimed before this start is free again, due when its head item
	// is (the lowest seq, not the earliest next_at: a parked head keeps
	// its lane parked). Every lane, whatever the clock says: the times
	// were the callers', and a lease's end may lie in this clock's past
	// or future.
	if err := migrateBindings(ctx, conn); err != nil {
		return s.openErr(err)
	}
	if err := loadBindings(ctx, conn, s.bindings, ms(s.o.Now())); err != nil {
		return s.openErr(err)
	}
	if s.o.Dir != "" {
		if err := s.openJournal(ctx); err != nil {
			return s.openErr(err)
		}
	}
	for _, q := range []string{
		"DELETE FROM lanes WHERE NOT EXISTS (SELECT 1 FROM items WHERE items.openid = lanes.openid AND state = 0)",
		"UPDATE lanes SET due_at = (SELECT next_at FROM items WHERE items.openid = lanes.openid AND state = 0 ORDER BY seq LIMIT 1)",
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return s.openErr(err)
		}
	}
	return nil
}

// openJournal opens the journal and runs again the batches it holds that
// the database does not, then commits them.
func (s *SQLite) openJournal(ctx context.Context) error {
	j, recs, err := openJournal(s.o.Dir)
	if err != nil {
		return err
	}
	s.journal = j
	held, err := journalHeld(ctx, s.conn)
	if err != nil {
		return err
	}
	j.seq = max(j.seq, held)
	// The records the database does not hold must continue it: a
	// journal beside a database put back from a backup belongs to a
	// later state.
	for _, r := range recs {
		if r.seq > held {
			if r.seq != held+1 {
				return s.setJournalAside(held, len(recs))
			}
			break
		}
	}
	if err := s.replay(recs, held); err != nil {
		s.dropTxn()
		return fmt.Errorf("running the journal again: %w", err)
	}
	if s.inTxn { // replay ran records
		// Only a process that died leaves them: worth a warning.
		s.log.Warn("store: the last run did not stop cleanly; batches recorded in the journal after the last commit were run again",
			"store", s.where(), "records", j.seq-held)
		if err := s.commitTxn(); err != nil {
			return fmt.Errorf("committing the journal: %w", err)
		}
		return nil
	}
	return j.reset()
}

// setJournalAside renames a journal that does not continue the database,
// keeping it for the operator, and starts a new one.
func (s *SQLite) setJournalAside(held uint64, records int) error {
	path := filepath.Join(s.o.Dir, journalName)
	aside := path + "." + time.Now().UTC().Format("20060102T150405")
	s.journal.f.Close()
	s.journal = nil
	if err := os.Rename(path, aside); err != nil {
		return fmt.Errorf("setting the journal aside: %w", err)
	}
	s.log.Warn("store: the journal does not continue the database (was the database put back from a backup?): set aside, not run",
		"store", s.where(), "journal", aside, "records", records)
	j, _, err := openJournal(s.o.Dir)
	if err != nil {
		return err
	}
	j.seq = held
	s.journal = j
	return nil
}

func (s *SQLite) openErr(err error) error {
	if s.o.Dir != "" {
		return fmt.Errorf("store %s: %w", s.o.Dir, err)
	}
	return fmt.Errorf("store: %w", err)
}

func (s *SQLite) release() {
	if s.journal != nil {
		s.journal.f.Close()
	}
	if s.conn != nil {
		s.conn.Close()
	}
	if s.db != nil {
		s.db.Close()
	}
	if s.lock != nil {
		s.lock.Close()
	}
}

// Close lets the operations already submitted finish, stops the writer
// and closes the database.
func (s *SQLite) Close() error {
	s.closeMu.Do(func() { close(s.stopped) })
	<-s.done
	<-s.checkpointed
	for _, st := range s.stmts {
		st.Close()
	}
	var err error
	if s.conn != nil {
		if s.o.Dir != "" && !s.lose.Load() {
			// Fold the WAL back into the database, so that a copy of
			// the file alone is a whole backup.
			_, _ = s.conn.ExecContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)")
		}
		err = s.conn.Close()
		s.conn = nil
	}
	s.release()
	return err
}

// checkpointEvery is how often the checkpointer copies the WAL's pages
// into the database.
const checkpointEvery = 500 * time.Millisecond

// The WAL starts again from its first page only when a write transaction
// begins with all of it copied into the database. Under a steady load the
// writer begins its next transaction right after each commit, before the
// checkpointer has copied that commit's pages, so the WAL would grow
// without end: the writer checkpoints itself after a commit once the WAL
// holds walRestartFrames and walRestartEvery has passed since it last
// did, or once it holds walMaxFrames. That checkpoint copies what the
// checkpointer has not (the last commit's pages, and fsyncs): it stalls
// the callbacks waiting for the writer for up to a few tens of
// milliseconds, which at most once in walRestartEvery keeps out of the
// p99. The WAL so stays within 16 MB at a light load, and within about
// 256 MB at the busiest.
const (
	walRestartFrames = 4000
	walRestartEvery  = 10 * time.Second
	walMaxFrames     = 64000
)

// checkpointDue runs the writer's checkpoint when it is due (see
// walRestartFrames), or after every commit when there is no checkpointer.
func (s *SQLite) checkpointDue() {
	frames := s.walFrames.Load()
	due := frames >= walMaxFrames || frames >= walRestartFrames && time.Since(s.writerCheckpoint) >= walRestartEvery
	if !due && !s.noCheckpointer.Load() {
		return
	}
	s.writerCheckpoint = time.Now()
	s.walFrames.Store(0) // until the checkpointer's next pass says
	_, _ = s.conn.ExecContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)")
}

// checkpointer copies committed pages from the WAL into the database, on
// a connection of its own, while the writer goes on. A checkpoint of a
// busy store takes tens of milliseconds; in the writer, every callback
// waiting behind it waited as long (issue 11's p99). A PASSIVE
// checkpoint takes no lock a writer needs and never waits.
func (s *SQLite) checkpointer() {
	defer close(s.checkpointed)
	ctx := context.Background()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		s.noCheckpointer.Store(true)
		s.log.Error("store: the checkpointer has no connection; the writer checkpoints alone", "store", s.where(), "error", err.Error())
		return
	}
	defer conn.Close()
	tick := time.NewTicker(checkpointEvery)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-s.stopped:
			return
		case <-tick.C:
		}
		var busy, wal, copied int
		err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &wal, &copied)
		if err == nil && busy == 0 {
			s.walFrames.Store(int64(wal))
		}
		if err != nil && !failing {
			s.log.Warn("store: a checkpoint failed", "store", s.where(), "error", err.Error())
		}
		failing = err != nil
	}
}

// Healthy is nil while the store can record what it is asked to: a
// failed write makes it unhealthy, and only a write that needed room (an
// Accept that recorded something, or the housekeeping probe that asks for
// probeBytes) makes it healthy again. Claims and completions update rows
// in place and commit even in a full store, so they prove nothing.
func (s *SQLite) Healthy() error {
	select {
	case <-s.stopped:
		return ErrClosed
	default:
	}
	if p := s.health.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats reports commits and their cost.
func (s *SQLite) Stats() Stats { return s.stats.snapshot() }

// do runs fn in the writer and waits for its COMMIT. When it returns an
// error because ctx ended, fn may still be running in the writer: its
// caller must not read what fn fills in, and returns zero values.
func (s *SQLite) do(ctx context.Context, kind string, write bool, fn func(tx *txn) error) error {
	return s.submit(ctx, &op{ctx: ctx, kind: kind, fn: fn, write: write, done: make(chan struct{})})
}

// submit hands o to the writer and waits for it, as do.
func (s *SQLite) submit(ctx context.Context, o *op) error {
	select {
	case <-s.stopped:
		return ErrClosed
	default:
	}
	select {
	case s.ops <- o:
	case <-s.stopped:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.wait(ctx, o)
}

// wait waits for the writer to answer o. A send racing Close can put o in
// the queue after the writer drained it and returned: then no one ever
// will, and the answer is ErrClosed. The writer closes o.done before
// s.done, so an o it did take is answered.
func (s *SQLite) wait(ctx context.Context, o *op) error {
	select {
	case <-o.done:
		return o.err
	case <-s.done:
		select {
		case <-o.done:
			return o.err
		default:
			return ErrClosed
		}
	case <-ctx.Done():
		// The operation may still commit: callers treat this as not
		// knowing, which for Accept means answering 503 so that WeChat
		// retries, and the retry finds the mark if it did commit.
		return ctx.Err()
	}
}

// writer is the one goroutine that touches the database.
func (s *SQLite) writer() {
	defer close(s.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	batch := make([]*op, 0, maxBatch)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	// commit fires when the journaled transaction has been open for
	// CommitEvery (commitDue).
	commit := time.NewTimer(time.Hour)
	commit.Stop()
	prev := 0 // operations in the last batch
	for {
		batch = batch[:0]
		select {
		case o := <-s.ops:
			batch = append(batch, o)
		case <-commit.C:
			s.commitDue(commit)
			continue
		case <-tick.C:
			s.housekeep()
			s.commitDue(commit)
			continue
		case <-s.stopped:
			// Finish what was submitted before Close.
			for {
				select {
				case o := <-s.ops:
					batch = append(batch, o)
					if len(batch) == maxBatch {
						s.run(batch)
						batch = batch[:0]
					}
				default:
					if len(batch) > 0 {
						s.run(batch)
					}
					if s.lose.Load() {
						s.dropTxn()
					}
					if s.inTxn {
						if err := s.commitTxn(); err != nil {
							s.log.Error("store: the last batches could not be committed; they stay in the journal for the next start",
								"store", s.where(), "error", err.Error())
						}
					}
					return
				}
			}
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break fill
			}
		}
		if lingerFor > 0 && prev > 1 && len(batch) < maxBatch {
			// Callers are many: wait a moment for more of them. A COMMIT
			// costs a write per page it changed, and the operations of
			// one batch share most of their pages (the newest leaf of
			// each table and index), so fewer, larger commits carry
			// more operations a second than many small ones.
			linger.Reset(lingerFor)
		wait:
			for len(batch) < maxBatch {
				select {
				case o := <-s.ops:
					batch = append(batch, o)
				case <-linger.C:
					break wait
				}
			}
			if !linger.Stop() {
				select {
				case <-linger.C:
				default:
				}
			}
		}
		prev = len(batch)
		s.run(batch)
		if s.pruneBehind && time.Since(s.lastChunk) >= pruneGap {
			s.pruneChunk(s.o.Now())
		}
		s.commitDue(commit)
	}
}

// commitDue commits the journaled transaction once it has been open for
// CommitEvery, or sets commit to fire then; after a failed commit it runs
// the journal again (sqlite_journal.go).
func (s *SQLite) commitDue(commit *time.Timer) {
	if s.journal == nil {
		return
	}
	if s.broken != nil {
		if time.Since(s.lastRecover) >= time.Second {
			s.recover()
		}
		return
	}
	if !s.inTxn {
		return
	}
	if open := time.Since(s.txnBegan); open < s.o.CommitEvery {
		commit.Reset(s.o.CommitEvery - open)
		return
	}
	commit.Stop()
	if err := s.commitTxn(); err != nil {
		s.recover()
	}
}

// dropTxn rolls the journaled transaction back, if open (SQLite answers
// an error when it holds none).
func (s *SQLite) dropTxn() {
	if s.inTxn {
		_, _ = s.conn.ExecContext(context.Background(), "ROLLBACK")
		s.inTxn = false
	}
}

// commitTxn commits the journaled transaction with the number of the
// last journal record it holds, and empties the journal. When the COMMIT
// fails the transaction is rolled back, and the store is broken until
// recover runs the journal again.
func (s *SQLite) commitTxn() error {
	start := time.Now()
	ctx := context.Background()
	s.inTxn = false
	_, err := s.conn.ExecContext(ctx, "INSERT OR REPLACE INTO meta(key, value) VALUES('journal', ?)", int64(s.journal.seq))
	if err == nil && s.failCommit.Add(-1) >= 0 {
		err = errors.New("a commit failed for the test")
	}
	if err == nil {
		_, err = s.conn.ExecContext(ctx, "COMMIT")
	}
	if err != nil {
		_, _ = s.conn.ExecContext(ctx, "ROLLBACK")
		s.failed(err, true)
		s.broken = s.dbErr(err)
		s.log.Error("store: a commit failed; the batches since the last one are run again from the journal",
			"store", s.where(), "error", err.Error())
		return err
	}
	if took := time.Since(start); took > slowCommit {
		s.log.Warn("slow store commit", "store", s.where(), "duration_ms", took.Milliseconds())
	}
	if err := s.journal.reset(); err != nil {
		// The database holds every record: the next start skips them.
		s.log.Error("store: the journal could not be emptied", "store", s.where(), "error", err.Error())
	}
	s.checkpointDue()
	return nil
}

// recover runs the journal again into a new transaction after a failed
// commit, from the state of the last one: the table of bindings and the
// memory of touched windows go back to it too. The store is broken (every
// operation fails) until it succeeds; the writer tries again a second
// later.
func (s *SQLite) recover() {
	ctx := context.Background()
	s.lastRecover = time.Now()
	// Whatever SQLite still holds of the transaction goes, whatever
	// inTxn says.
	s.inTxn = true
	s.dropTxn()
	if s.broken == nil {
		s.broken = errors.New("store: the journaled transaction was lost")
	}
	broken := s.broken
	s.health.Store(&broken)
	s.touched = make(map[int64]int64)
	s.bindings.reset()
	err := loadBindings(ctx, s.conn, s.bindings, ms(s.o.Now()))
	var recs []journalRecord
	var held uint64
	if err == nil {
		recs, err = s.journal.records()
	}
	if err == nil {
		held, err = journalHeld(ctx, s.conn)
	}
	if err == nil {
		err = s.replay(recs, held)
	}
	if err == nil && s.inTxn {
		err = s.commitTxn()
		if err != nil {
			return // broken again; commitTxn logged it
		}
	}
	if err != nil {
		s.dropTxn()
		s.broken = s.dbErr(err)
		s.health.Store(&s.broken)
		s.log.Error("store: the journal could not be run again; every operation fails until it can", "store", s.where(), "error", err.Error())
		return
	}
	s.broken = nil
	s.log.Info("store: the journal was run again and committed", "store", s.where())
}

// lingerFor is how long the writer waits for more operations once
// callers are many; an idle store commits each operation at once.
var lingerFor = 0 * time.Microsecond

// housekeep prunes what has expired and, while the store is unhealthy,
// probes whether it can be written again.
func (s *SQLite) housekeep() {
	now := s.o.Now()
	if now.Sub(s.lastForget) >= pruneEvery {
		// What touch remembers is of use for touchGrain after it was
		// written; forgotten here, not with the pruning, which a long
		// catch-up defers.
		s.lastForget = now
		for key, last := range s.touched {
			if last+touchGrain.Milliseconds() < ms(now) {
				delete(s.touched, key)
			}
		}
	}
	if s.pruneBehind {
		s.pruneChunk(now) // an idle writer still catches up, a chunk a tick
	} else {
		s.prunePeriodically(now)
	}
	if s.Healthy() != nil {
		// The probe takes room and gives it back in one transaction: it
		// commits only if probeBytes can be had, and leaves them free.
		s.run([]*op{{ctx: context.Background(), kind: "probe", write: true, done: make(chan struct{}), fn: func(tx *txn) error {
			if err := tx.exec("INSERT OR REPLACE INTO meta(key, value) VALUES('probe', zeroblob(?))", probeBytes); err != nil {
				return err
			}
			tx.grew = true
			return tx.exec("DELETE FROM meta WHERE key = 'probe'")
		}}})
	}
}

// prunePeriodically prunes every pruneEvery.
func (s *SQLite) prunePeriodically(now time.Time) {
	if now.Sub(s.lastPrune) < pruneEvery {
		return
	}
	s.lastPrune = now
	s.pruneChunk(now)
}

// pruneChunk runs one pruning transaction, so that callers wait behind
// one chunk at most. When it leaves more to prune (a busy server's marks
// outgrow a chunk a round), the writer runs the next chunks between its
// batches (pruneBehind), each at least pruneGap after the last.
//
// A chunk is journaled like the callers' operations: the operations after
// it in the same transaction ran on what it left (a deleted item's seq can
// be the next item's), so running them again after a crash needs it too.
func (s *SQLite) pruneChunk(now time.Time) {
	var out opOut
	rec := &opRec{Kind: opPrune, Now: now, Key: s.windowCursor}
	s.run([]*op{{ctx: context.Background(), kind: opPrune, rec: rec, write: true, done: make(chan struct{}), fn: func(tx *txn) error {
		return s.apply(tx, rec, &out)
	}}})
	s.pruneBehind, s.lastChunk = out.found, time.Now()
}

// run executes a batch in one transaction. When a statement fails the
// transaction is rolled back and each operation is run again on its own,
// so that one operation's failure is not its neighbours'.
func (s *SQLite) run(batch []*op) {
	live := batch[:0:0]
	for _, o := range batch {
		if o.ctx.Err() != nil {
			o.err = o.ctx.Err() // its caller is gone: do not record it
			close(o.done)
			continue
		}
		live = append(live, o)
	}
	if len(live) == 0 {
		return
	}
	// runTxn gave each op its error; a batch that failed is run again
	// op by op.
	if err := s.runTxn(live); err != nil && len(live) > 1 {
		for _, o := range live {
			_ = s.runTxn([]*op{o})
		}
	}
	for _, o := range live {
		close(o.done)
	}
}

// runTxn runs ops in one transaction and sets each one's err. It returns
// a database error that rolled the transaction back, after which the
// ops' errs are not final.
func (s *SQLite) runTxn(ops []*op) error {
	if s.journal != nil {
		return s.runJournaled(ops)
	}
	start := time.Now()
	ctx := context.Background()
	tx := &txn{s: s, ctx: ctx}
	_, err := s.conn.ExecContext(ctx, "BEGIN IMMEDIATE")
	began := time.Since(start)
	if err != nil {
		s.failed(err, true)
		for _, o := range ops {
			o.err = s.dbErr(err)
		}
		return err
	}
	for _, o := range ops {
		err := o.fn(tx)
		if err != nil && !logical(err) {
			tx.rollback()
			s.failed(err, o.write)
			for _, o := range ops {
				o.err = s.dbErr(err)
			}
			return err
		}
		o.err = err
	}
	ran := time.Since(start)
	if _, err := s.conn.ExecContext(ctx, "COMMIT"); err != nil {
		tx.rollback()
		s.failed(err, true)
		for _, o := range ops {
			o.err = s.dbErr(err)
		}
		return err
	}
	s.bindings.addAll(tx.bound)
	s.ended(tx, ops, start, "begin_ms", began.Milliseconds(), "statements_ms", (ran - began).Milliseconds())
	return nil
}

// ended counts a batch made durable, logs it when slow (with detail), and
// makes the store healthy again when the batch needed room.
func (s *SQLite) ended(tx *txn, ops []*op, start time.Time, detail ...any) {
	took := time.Since(start)
	s.stats.commit(len(ops), took)
	if took > slowCommit {
		s.log.Warn("slow store transaction", append([]any{"store", s.where(), "duration_ms", took.Milliseconds(),
			"operations", len(ops), "first", ops[0].kind}, detail...)...)
	}
	if tx.grew && s.health.Load() != nil {
		s.health.Store(nil)
		s.log.Info("store writable again", "store", s.where())
	}
}

// runJournaled runs ops in a savepoint of the journaled transaction
// (beginning it when needed), appends the write operations that changed
// something to the journal, and sets each op's err; see runTxn.
func (s *SQLite) runJournaled(ops []*op) error {
	start := time.Now()
	ctx := context.Background()
	fail := func(err error) error {
		for _, o := range ops {
			o.err = err
		}
		return err
	}
	if s.broken != nil {
		return fail(s.broken)
	}
	if !s.inTxn {
		if _, err := s.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			s.failed(err, true)
			return fail(s.dbErr(err))
		}
		s.inTxn, s.txnBegan = true, start
	}
	tx := &txn{s: s, ctx: ctx}
	if err := tx.exec("SAVEPOINT batch"); err != nil {
		s.failed(err, true)
		return fail(s.dbErr(err))
	}
	// undo takes the batch back; if the transaction itself is gone (an
	// error SQLite answers by rolling it back), the journal is run again.
	undo := func() {
		if err := tx.exec("ROLLBACK TO batch"); err != nil {
			s.recover() // the memory of touched windows goes back with it
			return
		}
		_ = tx.exec("RELEASE batch")
		tx.undoMemory()
	}
	recs := make([]opRec, 0, len(ops))
	for _, o := range ops {
		err := o.fn(tx)
		if err != nil && !logical(err) {
			undo()
			s.failed(err, o.write)
			return fail(s.dbErr(err))
		}
		o.err = err
		if o.rec != nil && err == nil {
			recs = append(recs, o.rec.journaled())
		}
	}
	ran := time.Since(start)
	if len(recs) > 0 {
		if err := s.journal.append(recs); err != nil {
			undo()
			s.failed(err, true)
			return fail(err)
		}
	}
	if err := tx.exec("RELEASE batch"); err != nil {
		// Not expected: the batch is in the journal, so run it again
		// (its bindings with it).
		s.recover()
	} else {
		s.bindings.addAll(tx.bound)
	}
	s.ended(tx, ops, start, "statements_ms", ran.Milliseconds())
	return nil
}

// failed records a failed transaction; one that tried to write makes the
// store unhealthy until a write that needed room commits. A constraint
// violation (an item ID used twice) is the caller's fault, not the
// store's.
func (s *SQLite) failed(err error, write bool) {
	s.stats.failed.Add(1)
	if !write || constraint(err) {
		return
	}
	e := s.dbErr(err)
	if s.health.Swap(&e) == nil {
		s.log.Error("store cannot be written: callbacks are answered 503 until it can", "store", s.where(), "error", err.Error())
	}
}

func (s *SQLite) dbErr(err error) error {
	return fmt.Errorf("store %s: %w", s.where(), err)
}

func (s *SQLite) where() string {
	if s.o.Dir == "" {
		return Memory
	}
	return s.o.Dir
}

func constraint(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}

func logical(err error) bool {
	return errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrIdempotencyConflict) || errors.Is(err, ErrQueryReused)
}

// txn is the writer's view of the current transaction: statements are
// prepared once and reused.
type txn struct {
	s   *SQLite
	ctx context.Context

	// grew: an op recorded something new (see Healthy).
	grew bool

	// undo takes back, last first, what the ops changed in memory (the
	// writer's touched) when the transaction rolls back.
	undo []func()

	// bound: the bindings the ops made, for the table in memory once the
	// transaction commits.
	bound []madeBinding
}

// madeBinding is a binding with the time of the batch that made it.
type madeBinding struct {
	binding
	now int64
}

// rollback rolls the transaction back, in the database and in memory.
func (t *txn) rollback() {
	_, _ = t.s.conn.ExecContext(t.ctx, "ROLLBACK")
	t.undoMemory()
}

// undoMemory takes back, last first, what the transaction's ops changed
// in memory.
func (t *txn) undoMemory() {
	for i := len(t.undo) - 1; i >= 0; i-- {
		t.undo[i]()
	}
	t.undo = nil
}

func (t *txn) stmt(q string) (*sql.Stmt, error) {
	if st, ok := t.s.stmts[q]; ok {
		return st, nil
	}
	st, err := t.s.conn.PrepareContext(t.ctx, q)
	if err != nil {
		return nil, err
	}
	t.s.stmts[q] = st
	return st, nil
}

func (t *txn) exec(q string, args ...any) error {
	_, err := t.execN(q, args...)
	return err
}

// execN runs q and returns how many rows it changed.
func (t *txn) execN(q string, args ...any) (int64, error) {
	st, err := t.stmt(q)
	if err != nil {
		return 0, err
	}
	res, err := st.ExecContext(t.ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// row runs a query expected to return at most one row; found is false
// when it returned none.
func (t *txn) row(q string, args []any, dest ...any) (found bool, err error) {
	st, err := t.stmt(q)
	if err != nil {
		return false, err
	}
	err = st.QueryRowContext(t.ctx, args...).Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func (t *txn) query(q string, args ...any) (*sql.Rows, error) {
	st, err := t.stmt(q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(t.ctx, args...)
}
