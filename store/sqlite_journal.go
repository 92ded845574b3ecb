package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"time"
)

// The embedded store's journal: what makes a batch durable before SQLite
// commits it.
//
// A COMMIT writes every page the transaction changed, and a callback with
// a reply changes pages all over the database (its item, its user's lane
// in the lanes index, its retry mark): on the binary, the commits and
// their checkpoints were half of a callback's cost. So the writer keeps
// one SQLite transaction open for up to journalCommitEvery, and makes each
// batch durable by appending it to the journal file instead: the write
// operations it ran, with their arguments, in one write(2) — after which
// a kill -9 cannot lose it, which is what synchronous=NORMAL gave (a
// power cut may lose the last records, as it could lose the last
// transactions). Then SQLite commits many batches' pages at once, records
// in meta the last journal record it holds, and the journal starts again.
//
// When the store opens, the records past the one SQLite holds are run
// again, in order, from the state SQLite committed: each operation does
// what it did the first time, since what it does depends only on its
// arguments (every time is one) and on that state. Operations that
// changed nothing (a logical error: a lease lost, a query reused) are not
// journaled. The pruning is (with the windows' sweep cursor): what follows
// it in the transaction ran on what it left, down to the seq a new item
// takes after the last one is deleted.
//
// Each batch runs in a savepoint of the open transaction, so that a
// failed statement takes back its batch alone. If SQLite cannot commit,
// the transaction is rolled back and the journal, which still holds
// every batch since the last commit, is run again into a new one; until
// that succeeds, the store refuses every operation.
//
// Readers of the file beside the server (sqlite3, an online backup) see
// the state of the last commit: at most journalCommitEvery behind.

// journalCommitEvery is how long the writer's transaction stays open.
const journalCommitEvery = 200 * time.Millisecond

// journalName is the journal's file in the store's directory.
const journalName = "wxreply.journal"

// Write operations as the journal names them.
const (
	opAccept           = "Accept"
	opClaim            = "Claim"
	opComplete         = "Complete"
	opRetry            = "Retry"
	opRelease          = "Release"
	opExtend           = "Extend"
	opCloseWindow      = "CloseWindow"
	opPause            = "Pause"
	opTemplateFinished = "TemplateFinished"
	opPutMedia         = "PutMedia"
	opDeleteMedia      = "DeleteMedia"
	opPrune            = "Prune" // a chunk of the housekeeping, with the windows' sweep cursor in Key
)

// opRec is a write operation: its kind and its arguments, as the journal
// keeps them. JSON keeps every byte slice as it was; a string that is not
// UTF-8 would come back with U+FFFD in place of its bad bytes, which only
// an error text or a media file's name can be (an XML or JSON request's
// strings are UTF-8 by then): the text reads the same, and the file is
// uploaded again.
type opRec struct {
	Kind   string        `json:"k"`
	Batch  *Batch        `json:"b,omitempty"`
	Now    time.Time     `json:"n,omitzero"`
	Max    int           `json:"m,omitempty"`
	Lease  time.Duration `json:"l,omitempty"`
	Claim  *Claim        `json:"c,omitempty"`
	Claims []Claim       `json:"cs,omitempty"`
	Final  *Final        `json:"f,omitempty"`
	Retry  *Retry        `json:"r,omitempty"`
	Until  time.Time     `json:"u,omitzero"`
	OpenID string        `json:"o,omitempty"`
	Asked  time.Time     `json:"a,omitzero"`
	MsgID  int64         `json:"i,omitempty"`
	Status string        `json:"s,omitempty"`
	Key    string        `json:"key,omitempty"`
	Media  *Media        `json:"md,omitempty"`
}

// opOut is what a write operation answers.
type opOut struct {
	accepted Accepted
	claims   []Claim
	next     time.Time
	status   Status
	found    bool
	lost     []string
}

// apply runs r in tx: the one way a write operation runs, live or from
// the journal.
func (s *SQLite) apply(tx *txn, r *opRec, out *opOut) error {
	switch r.Kind {
	case opAccept:
		return s.accept(tx, r.Batch, out)
	case opClaim:
		return s.claim(tx, r.Now, r.Max, r.Lease, out)
	case opComplete:
		return s.complete(tx, r.Claim, r.Final, out)
	case opRetry:
		return s.retry(tx, r.Claim, r.Retry)
	case opRelease:
		return s.releaseClaim(tx, r.Claim, r.Now)
	case opExtend:
		return s.extend(tx, r.Claims, r.Until, out)
	case opCloseWindow:
		return s.closeWindow(tx, r.OpenID, r.Asked)
	case opPause:
		return s.pause(tx, r.Until)
	case opTemplateFinished:
		return s.templateFinished(tx, r.MsgID, r.Status, r.Now, out)
	case opPutMedia:
		return s.putMedia(tx, r.Key, r.Media)
	case opDeleteMedia:
		return s.deleteMedia(tx, r.Key)
	case opPrune:
		s.windowCursor = r.Key
		var err error
		out.found, err = s.prune(tx, r.Now)
		return err
	}
	return fmt.Errorf("an operation of unknown kind %q", r.Kind)
}

// journaled is r as the journal keeps it: a claim by what identifies its
// lease (the rest is read from the store, and only answers).
func (r *opRec) journaled() opRec {
	j := *r
	lean := func(c Claim) Claim {
		return Claim{Item: Item{NewItem: NewItem{ID: c.Item.ID, OpenID: c.Item.OpenID}, Seq: c.Item.Seq}, Token: c.Token}
	}
	if r.Claim != nil {
		c := lean(*r.Claim)
		j.Claim = &c
	}
	if r.Claims != nil {
		j.Claims = make([]Claim, len(r.Claims))
		for i, c := range r.Claims {
			j.Claims[i] = lean(c)
		}
	}
	return j
}

// write runs the write operation r in the writer, journaled.
func (s *SQLite) write(ctx context.Context, r *opRec, out *opOut) error {
	if out == nil {
		out = &opOut{}
	}
	return s.submit(ctx, &op{ctx: ctx, kind: r.Kind, rec: r, write: true, done: make(chan struct{}),
		fn: func(tx *txn) error { return s.apply(tx, r, out) }})
}

// journal is the journal file: records of [length, CRC-32C, sequence
// number, JSON of the batch's operations], the length and CRC covering
// the last two.
type journal struct {
	f    *os.File
	seq  uint64 // the last record's
	size int64
	buf  []byte
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journalRecord is one record read back.
type journalRecord struct {
	seq uint64
	ops []opRec
}

// openJournal opens the journal in dir and reads its records; a torn
// last record (a write cut short by the process's death) ends them, and
// is cut off.
func openJournal(dir string) (*journal, []journalRecord, error) {
	f, err := os.OpenFile(filepath.Join(dir, journalName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("store journal: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("store journal: %w", err)
	}
	recs, whole := parseJournal(data)
	j := &journal{f: f, size: int64(whole)}
	if len(recs) > 0 {
		j.seq = recs[len(recs)-1].seq
	}
	if j.size != int64(len(data)) {
		if err := f.Truncate(j.size); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("store journal: %w", err)
		}
	}
	if _, err := f.Seek(j.size, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("store journal: %w", err)
	}
	return j, recs, nil
}

// parseJournal reads the records of data up to the first that is not
// whole, and the length they take.
func parseJournal(data []byte) (recs []journalRecord, whole int) {
	for {
		r, n, ok := parseJournalRecord(data[whole:])
		if !ok {
			return recs, whole
		}
		recs = append(recs, r)
		whole += n
	}
}

// parseJournalRecord reads the record at the start of data and its
// length; ok is false for none, a torn one or a damaged one.
func parseJournalRecord(data []byte) (r journalRecord, n int, ok bool) {
	if len(data) < 8 {
		return r, 0, false
	}
	size, sum := binary.BigEndian.Uint32(data), binary.BigEndian.Uint32(data[4:])
	if size < 8 || uint64(len(data)-8) < uint64(size) {
		return r, 0, false
	}
	body := data[8 : 8+size]
	if crc32.Checksum(body, castagnoli) != sum {
		return r, 0, false
	}
	r.seq = binary.BigEndian.Uint64(body)
	if json.Unmarshal(body[8:], &r.ops) != nil {
		return r, 0, false
	}
	return r, 8 + int(size), true
}

// append writes one record of ops, in one write.
func (j *journal) append(ops []opRec) error {
	b := append(j.buf[:0], 0, 0, 0, 0, 0, 0, 0, 0) // length and CRC, below
	b = binary.BigEndian.AppendUint64(b, j.seq+1)
	b, err := appendJSON(b, ops)
	if err != nil {
		return err
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-8))
	binary.BigEndian.PutUint32(b[4:], crc32.Checksum(b[8:], castagnoli))
	j.buf = b
	if _, err := j.f.Write(b); err != nil {
		// A short write leaves a torn record: cut it off, or the next
		// records would follow it unread.
		_ = j.f.Truncate(j.size)
		_, _ = j.f.Seek(j.size, io.SeekStart)
		return fmt.Errorf("store journal: %w", err)
	}
	j.seq++
	j.size += int64(len(b))
	return nil
}

func appendJSON(b []byte, v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("store journal: %w", err)
	}
	return append(b, data...), nil
}

// reset empties the journal once SQLite holds all it recorded.
func (j *journal) reset() error {
	if err := j.f.Truncate(0); err != nil {
		return fmt.Errorf("store journal: %w", err)
	}
	if _, err := j.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("store journal: %w", err)
	}
	j.size = 0
	return nil
}

// records reads the journal's records back (to run them again after a
// failed commit).
func (j *journal) records() ([]journalRecord, error) {
	data := make([]byte, j.size)
	if _, err := j.f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("store journal: %w", err)
	}
	recs, whole := parseJournal(data)
	if whole != len(data) {
		return nil, errors.New("store journal: a damaged record")
	}
	return recs, nil
}

// journalHeld is the sequence number of the last journal record that the
// database holds.
func journalHeld(ctx context.Context, conn *sql.Conn) (uint64, error) {
	var v int64
	err := conn.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = 'journal'").Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return uint64(v), err
}

// replay runs in a new transaction the records the database does not
// hold, and leaves it open; with none, it begins none.
func (s *SQLite) replay(recs []journalRecord, held uint64) error {
	for _, rec := range recs {
		if rec.seq <= held {
			continue
		}
		if !s.inTxn {
			if _, err := s.conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
				return err
			}
			s.inTxn, s.txnBegan = true, time.Now()
		}
		tx := &txn{s: s, ctx: context.Background()}
		for i := range rec.ops {
			err := s.apply(tx, &rec.ops[i], &opOut{})
			if err != nil && !logical(err) {
				return fmt.Errorf("record %d, %s: %w", rec.seq, rec.ops[i].Kind, err)
			}
			if err != nil {
				// It succeeded the first time: running it again did not
				// do what it did, which nothing should make happen.
				s.log.Error("store: an operation run again from the journal did not do what it did the first time",
					"store", s.where(), "record", rec.seq, "operation", rec.ops[i].Kind, "error", err.Error())
			}
		}
		s.bindings.addAll(tx.bound)
	}
	return nil
}
