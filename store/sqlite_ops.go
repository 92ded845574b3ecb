package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// schema creates the tables. Times are Unix milliseconds.
//
//   - items: the outbox and the statuses, one row per accepted message;
//     seq (the rowid) is the order of acceptance. state 0 is waiting, 1
//     delivered, 2 failed; ended rows stay for Retention.
//   - lanes: one row per user with waiting items. due_at is when its head
//     item may be claimed: the head's next_at, or the end of the lease
//     while claimed, so that a lease that runs out makes the lane due
//     again by itself. token grows with every claim.
//   - marks: retry-dedupe keys with the passive answer of the first copy.
//   - bindings: signed callback queries with the hash of the body each
//     served (one query, one body), a log in the order they came, looked
//     up in memory (sqlite_bindings.go). Its expires is in Unix seconds.
//   - idem: Idempotency-Keys with the request's fingerprint and ids.
//   - windows: the last window-opening interaction per user, whether
//     WeChat answered 45015 since, and the latest call it answered so
//     (closed_at).
//   - early: template delivery reports that overtook their send.
//   - states: a user's conversation state (a rule's set_state) with
//     when it expires.
//   - meta: the pause after 45009, the health probe.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS items(
		seq INTEGER PRIMARY KEY,
		id TEXT NOT NULL UNIQUE,
		openid TEXT NOT NULL,
		state INTEGER NOT NULL DEFAULT 0,
		msgtype TEXT NOT NULL DEFAULT '',
		rule TEXT NOT NULL DEFAULT '',
		in_msg_id TEXT NOT NULL DEFAULT '',
		payload BLOB NOT NULL,
		attempts INTEGER NOT NULL DEFAULT 0,
		next_at INTEGER NOT NULL,
		created INTEGER NOT NULL,
		updated INTEGER NOT NULL,
		reason TEXT NOT NULL DEFAULT '',
		errcode INTEGER NOT NULL DEFAULT 0,
		last_error TEXT NOT NULL DEFAULT '',
		msgid INTEGER,
		template_status TEXT NOT NULL DEFAULT '')`,
	`CREATE INDEX IF NOT EXISTS items_lane ON items(openid, seq) WHERE state = 0`,
	`CREATE INDEX IF NOT EXISTS items_ended ON items(updated) WHERE state <> 0`,
	`CREATE INDEX IF NOT EXISTS items_msgid ON items(msgid) WHERE msgid IS NOT NULL`,
	`CREATE TABLE IF NOT EXISTS lanes(openid TEXT PRIMARY KEY, due_at INTEGER NOT NULL, token INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID`,
	// A new item's lane exists from the moment it does; a lane already
	// there (claimed, or parked behind a retry) stays as it is. In a
	// trigger, it costs the caller no statement of its own.
	`CREATE TRIGGER IF NOT EXISTS items_lane_insert AFTER INSERT ON items BEGIN
		INSERT INTO lanes(openid, due_at) VALUES(NEW.openid, NEW.next_at) ON CONFLICT(openid) DO NOTHING;
	END`,
	`CREATE INDEX IF NOT EXISTS lanes_due ON lanes(due_at)`,
	`CREATE TABLE IF NOT EXISTS marks(key TEXT PRIMARY KEY, expires INTEGER NOT NULL, answer BLOB) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS marks_expires ON marks(expires)`,
	`CREATE TABLE IF NOT EXISTS idem(key TEXT PRIMARY KEY, fp BLOB NOT NULL, ids TEXT NOT NULL, expires INTEGER NOT NULL) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS idem_expires ON idem(expires)`,
	`CREATE TABLE IF NOT EXISTS windows(openid TEXT PRIMARY KEY, last INTEGER NOT NULL, closed INTEGER NOT NULL DEFAULT 0, closed_at INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID`,
	`DROP INDEX IF EXISTS windows_last`, // every touch paid for it; windows are pruned by a sweep
	`CREATE TABLE IF NOT EXISTS early(msgid INTEGER PRIMARY KEY, status TEXT NOT NULL, at INTEGER NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS media(key TEXT PRIMARY KEY, id TEXT NOT NULL, size INTEGER NOT NULL, mod_ns INTEGER NOT NULL, expires INTEGER NOT NULL) WITHOUT ROWID`,
	// The bindings' log, looked up in memory (sqlite_bindings.go).
	`CREATE TABLE IF NOT EXISTS bindings(seq INTEGER PRIMARY KEY, key INTEGER NOT NULL, body INTEGER NOT NULL, at INTEGER NOT NULL, expires INTEGER NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS states(openid TEXT PRIMARY KEY, name TEXT NOT NULL, expires INTEGER NOT NULL) WITHOUT ROWID`,
	`CREATE INDEX IF NOT EXISTS states_expires ON states(expires)`,
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

// Accept records b in one transaction.
func (s *SQLite) Accept(ctx context.Context, b *Batch) (Accepted, error) {
	var out opOut
	if err := s.write(ctx, &opRec{Kind: opAccept, Batch: b}, &out); err != nil {
		return Accepted{}, err
	}
	return out.accepted, nil
}

// accept is Accept in the writer.
func (s *SQLite) accept(tx *txn, b *Batch, out *opOut) error {
	out.accepted = Accepted{}
	now := ms(b.Now)
	if b.IdemKey != "" {
		var fp []byte
		var ids string
		found, err := tx.row("SELECT fp, ids FROM idem WHERE key = ? AND expires > ?", []any{b.IdemKey, now}, &fp, &ids)
		if err != nil {
			return err
		}
		if found {
			if !bytes.Equal(fp, b.IdemFingerprint) {
				return ErrIdempotencyConflict
			}
			out.accepted = Accepted{IDs: splitIDs(ids), Duplicate: true}
			return nil
		}
	}
	// The query before the mark: a query used for another body
	// refuses the batch before anything is written (sqlite_marks.go).
	if b.Query != "" {
		if err := s.bindQuery(tx, b, now); err != nil {
			return err
		}
	}
	if b.Dedupe != "" {
		answer, duplicate, err := s.markOnce(tx, b, now)
		if err != nil {
			return err
		}
		if duplicate {
			out.accepted = Accepted{Answer: answer, Duplicate: true}
			return nil
		}
	}
	if b.Touch != "" {
		if err := touch(tx, b.Touch, now); err != nil {
			return err
		}
	}
	if err := putState(tx, b); err != nil {
		return err
	}
	ids := make([]string, len(b.Items))
	for i, it := range b.Items {
		if err := tx.exec(`INSERT INTO items(id, openid, msgtype, rule, in_msg_id, payload, next_at, created, updated)
			VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)`, it.ID, it.OpenID, it.MsgType, it.Rule, it.InMsgID, it.Payload, now, now, now); err != nil {
			return err
		}
		ids[i] = it.ID
	}
	if b.IdemKey != "" {
		if err := tx.exec("INSERT OR REPLACE INTO idem(key, fp, ids, expires) VALUES(?, ?, ?, ?)",
			b.IdemKey, b.IdemFingerprint, joinIDs(ids), ms(b.Now.Add(b.IdemTTL))); err != nil {
			return err
		}
	}
	out.accepted = Accepted{IDs: ids, Answer: b.Answer}
	tx.grew = true
	return nil
}

// joinIDs keeps an idempotency key's IDs as a JSON array: push clients
// choose IDs, commas and all.
func joinIDs(ids []string) string {
	if ids == nil {
		ids = []string{} // [], not null
	}
	b, _ := json.Marshal(ids) // []string always marshals
	return string(b)
}

// splitIDs reads what joinIDs wrote, or the comma-joined list that the
// first version of the store wrote (its keys expire within IdemTTL).
func splitIDs(s string) []string {
	if strings.HasPrefix(s, "[") {
		var ids []string
		if json.Unmarshal([]byte(s), &ids) == nil {
			return ids
		}
	}
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// touch records an interaction at now: a later one than recorded moves
// Last, and reopens a window closed by a 45015 if it is later than the
// call that got it (closed_at); an earlier one (a replayed callback)
// changes nothing.
//
// A touch within touchGrain of the recorded one changes nothing either,
// unless it reopens a closed window: a chatting user's every message
// would otherwise rewrite the row, and a window known to the minute is
// as good as one known to the millisecond (WeChat's 45015 corrects the
// rest).
//
// The writer remembers, for the users touched since the last pruning
// round, the Last it wrote while their window was open (SQLite.touched):
// a touch within touchGrain of it skips the statement. A 45015 for the
// user forgets it (CloseWindow), and so does a rollback.
func touch(tx *txn, openid string, now int64) error {
	key := markKey(openid)
	if last, ok := tx.s.touched[key]; ok && now >= last && now <= last+touchGrain.Milliseconds() {
		return nil
	}
	var closed bool
	changed, err := tx.row(`INSERT INTO windows(openid, last) VALUES(?, ?)
		ON CONFLICT(openid) DO UPDATE SET last = excluded.last, closed = windows.closed AND excluded.last <= windows.closed_at
		WHERE excluded.last > windows.last + ? OR (windows.closed AND excluded.last > windows.closed_at)
		RETURNING closed`,
		[]any{openid, now, touchGrain.Milliseconds()}, &closed)
	if err != nil || !changed || closed {
		return err
	}
	prev, had := tx.s.touched[key]
	tx.s.touched[key] = now
	tx.undo = append(tx.undo, func() {
		if had {
			tx.s.touched[key] = prev
		} else {
			delete(tx.s.touched, key)
		}
	})
	return nil
}

// touchGrain is how much later an interaction must be than the one
// recorded to be recorded.
const touchGrain = time.Minute

// Claim leases up to max due lanes.
func (s *SQLite) Claim(ctx context.Context, now time.Time, max int, lease time.Duration) ([]Claim, time.Time, error) {
	var out opOut
	if err := s.write(ctx, &opRec{Kind: opClaim, Now: now, Max: max, Lease: lease}, &out); err != nil {
		return nil, time.Time{}, err
	}
	return out.claims, out.next, nil
}

// claim is Claim in the writer.
func (s *SQLite) claim(tx *txn, now time.Time, max int, lease time.Duration, out *opOut) error {
	out.claims, out.next = out.claims[:0], time.Time{}
	n := ms(now)
	var paused int64
	if _, err := tx.row("SELECT value FROM meta WHERE key = 'paused_until'", nil, &paused); err != nil {
		return err
	}
	if paused > n {
		out.next = fromMS(paused)
		return nil
	}
	// The due lanes with their head items and windows, in one query.
	rows, err := tx.query(`SELECT l.openid, l.token, i.seq, i.id, i.msgtype, i.rule, i.in_msg_id, i.payload, i.attempts,
			i.last_error, i.created, i.next_at, w.last, w.closed
		FROM lanes l
		LEFT JOIN items i ON i.seq = (SELECT seq FROM items WHERE openid = l.openid AND state = 0 ORDER BY seq LIMIT 1)
		LEFT JOIN windows w ON w.openid = l.openid
		WHERE l.due_at <= ? ORDER BY l.due_at LIMIT ?`, n, max)
	if err != nil {
		return err
	}
	var empty []string // lanes with no waiting item
	for rows.Next() {
		var c Claim
		it := &c.Item
		var seq, attempts, created, nextAt, last, closed sql.NullInt64
		var id, msgtype, rule, inMsgID, lastError sql.NullString
		if err := rows.Scan(&it.OpenID, &c.Token, &seq, &id, &msgtype, &rule, &inMsgID, &it.Payload, &attempts,
			&lastError, &created, &nextAt, &last, &closed); err != nil {
			rows.Close()
			return err
		}
		if !seq.Valid {
			empty = append(empty, it.OpenID)
			continue
		}
		c.Token++
		it.Seq, it.ID, it.MsgType, it.Rule, it.InMsgID = seq.Int64, id.String, msgtype.String, rule.String, inMsgID.String
		it.Attempts, it.LastError = int(attempts.Int64), lastError.String
		it.Created, it.NextAt = fromMS(created.Int64), fromMS(nextAt.Int64)
		if last.Valid {
			c.Window = Window{Known: true, Last: fromMS(last.Int64), Closed: closed.Int64 != 0}
		}
		out.claims = append(out.claims, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, openid := range empty {
		if err := tx.exec("DELETE FROM lanes WHERE openid = ?", openid); err != nil {
			return err
		}
	}
	until := ms(now.Add(lease))
	for _, c := range out.claims {
		if err := tx.exec("UPDATE lanes SET due_at = ?, token = ? WHERE openid = ?", until, c.Token, c.Item.OpenID); err != nil {
			return err
		}
	}
	var earliest sql.NullInt64
	if _, err := tx.row("SELECT MIN(due_at) FROM lanes", nil, &earliest); err != nil {
		return err
	}
	if earliest.Valid {
		out.next = fromMS(earliest.Int64)
	}
	return nil
}

func window(tx *txn, openid string) (Window, error) {
	var last int64
	var closed bool
	found, err := tx.row("SELECT last, closed FROM windows WHERE openid = ?", []any{openid}, &last, &closed)
	if err != nil || !found {
		return Window{}, err
	}
	return Window{Known: true, Last: fromMS(last), Closed: closed}, nil
}

// holds checks that c still holds its lane. The token alone does not
// prove it: a lane emptied is deleted, and created again with its token
// counting from 0, so a stale claim's token can come round again. But
// while c's item waits its lane is never deleted, so a waiting item and
// the same token are the same lease.
func holds(tx *txn, c Claim) error {
	var token int64
	found, err := tx.row(`SELECT lanes.token FROM lanes JOIN items ON items.openid = lanes.openid
		WHERE lanes.openid = ? AND items.seq = ? AND items.state = 0`, []any{c.Item.OpenID, c.Item.Seq}, &token)
	if err != nil {
		return err
	}
	if !found || token != c.Token {
		return ErrLeaseLost
	}
	return nil
}

// advance makes the lane of openid due for its next item, or removes it:
// one statement for the usual lane of one reply, two for a longer one.
func advance(tx *txn, openid string) error {
	n, err := tx.execN("DELETE FROM lanes WHERE openid = ? AND NOT EXISTS (SELECT 1 FROM items WHERE openid = ? AND state = 0)", openid, openid)
	if err != nil || n > 0 {
		return err
	}
	return tx.exec("UPDATE lanes SET due_at = (SELECT next_at FROM items WHERE openid = ? AND state = 0 ORDER BY seq LIMIT 1) WHERE openid = ?", openid, openid)
}

// Complete ends a claimed item.
func (s *SQLite) Complete(ctx context.Context, c Claim, f Final) (Status, error) {
	var out opOut
	if err := s.write(ctx, &opRec{Kind: opComplete, Claim: &c, Final: &f}, &out); err != nil {
		return Status{}, err
	}
	return out.status, nil
}

// complete is Complete in the writer.
func (s *SQLite) complete(tx *txn, c *Claim, f *Final, out *opOut) error {
	state := 1
	if !f.Delivered {
		state = 2
	}
	var msgid any
	if f.MsgID != 0 {
		msgid = f.MsgID
	}
	now := ms(f.Now)
	// The lease check and the update in one statement: it changes
	// the item only while the item waits and its lane's token is the
	// claim's (what holds checks).
	n, err := tx.execN(`UPDATE items SET state = ?, reason = ?, errcode = ?, attempts = ?, msgid = ?, last_error = ?, updated = ?
		WHERE seq = ? AND state = 0 AND (SELECT token FROM lanes WHERE openid = ?) = ?`,
		state, f.Reason, f.ErrCode, f.Attempts, msgid, f.LastError, now, c.Item.Seq, c.Item.OpenID, c.Token)
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrLeaseLost
	}
	if f.MsgID != 0 {
		var status string
		found, err := tx.row("SELECT status FROM early WHERE msgid = ?", []any{f.MsgID}, &status)
		if err != nil {
			return err
		}
		if found {
			if err := tx.exec("UPDATE items SET template_status = ? WHERE seq = ?", status, c.Item.Seq); err != nil {
				return err
			}
			if err := tx.exec("DELETE FROM early WHERE msgid = ?", f.MsgID); err != nil {
				return err
			}
		}
	}
	if err := advance(tx, c.Item.OpenID); err != nil {
		return err
	}
	if f.MsgID != 0 {
		out.status, _, err = statusOf(tx, "seq", c.Item.Seq)
		return err
	}
	// Nothing but the claim and f changed the item: no read needed.
	it := c.Item
	out.status = Status{ID: it.ID, State: [...]string{StateQueued, StateDelivered, StateFailed}[state], Reason: f.Reason,
		ErrCode: f.ErrCode, Attempts: f.Attempts, OpenID: it.OpenID, Rule: it.Rule, InMsgID: it.InMsgID,
		MsgType: it.MsgType, LastError: f.LastError, Created: it.Created, Updated: fromMS(now)}
	return nil
}

// Retry parks a claimed item until r.At.
func (s *SQLite) Retry(ctx context.Context, c Claim, r Retry) error {
	return s.write(ctx, &opRec{Kind: opRetry, Claim: &c, Retry: &r}, nil)
}

// retry is Retry in the writer.
func (s *SQLite) retry(tx *txn, c *Claim, r *Retry) error {
	if err := holds(tx, *c); err != nil {
		return err
	}
	if err := tx.exec("UPDATE items SET attempts = ?, last_error = ?, next_at = ?, updated = ? WHERE seq = ?",
		r.Attempts, r.LastError, ms(r.At), ms(r.Now), c.Item.Seq); err != nil {
		return err
	}
	return tx.exec("UPDATE lanes SET due_at = ? WHERE openid = ?", ms(r.At), c.Item.OpenID)
}

// Release gives a claimed item back, due at now.
func (s *SQLite) Release(ctx context.Context, c Claim, now time.Time) error {
	return s.write(ctx, &opRec{Kind: opRelease, Claim: &c, Now: now}, nil)
}

// releaseClaim is Release in the writer.
func (s *SQLite) releaseClaim(tx *txn, c *Claim, now time.Time) error {
	if err := holds(tx, *c); err != nil {
		return err
	}
	return tx.exec("UPDATE lanes SET due_at = ? WHERE openid = ?", ms(now), c.Item.OpenID)
}

// Extend renews the leases of the claims still held.
func (s *SQLite) Extend(ctx context.Context, claims []Claim, until time.Time) ([]string, error) {
	var out opOut
	if err := s.write(ctx, &opRec{Kind: opExtend, Claims: claims, Until: until}, &out); err != nil {
		return nil, err
	}
	return out.lost, nil
}

// extend is Extend in the writer.
func (s *SQLite) extend(tx *txn, claims []Claim, until time.Time, out *opOut) error {
	out.lost = out.lost[:0]
	for _, c := range claims {
		err := holds(tx, c)
		if errors.Is(err, ErrLeaseLost) {
			out.lost = append(out.lost, c.Item.ID)
			continue
		}
		if err != nil {
			return err
		}
		if err := tx.exec("UPDATE lanes SET due_at = ? WHERE openid = ?", ms(until), c.Item.OpenID); err != nil {
			return err
		}
	}
	return nil
}

const statusColumns = `id, state, reason, errcode, attempts, openid, rule, in_msg_id, msgtype, COALESCE(msgid, 0),
	template_status, last_error, created, updated, next_at`

func statusOf(tx *txn, col string, v any) (Status, bool, error) {
	var st Status
	var state int
	var created, updated, nextAt int64
	found, err := tx.row("SELECT "+statusColumns+" FROM items WHERE "+col+" = ?", []any{v},
		&st.ID, &state, &st.Reason, &st.ErrCode, &st.Attempts, &st.OpenID, &st.Rule, &st.InMsgID, &st.MsgType, &st.MsgID,
		&st.TemplateStatus, &st.LastError, &created, &updated, &nextAt)
	if err != nil || !found {
		return Status{}, false, err
	}
	st.State = [...]string{StateQueued, StateDelivered, StateFailed}[state]
	st.Created, st.Updated = fromMS(created), fromMS(updated)
	if state == 0 {
		st.NextAt = fromMS(nextAt)
	}
	return st, true, nil
}

// Status reports on an item by ID.
func (s *SQLite) Status(ctx context.Context, id string) (Status, bool, error) {
	var st Status
	var ok bool
	err := s.do(ctx, "Status", false, func(tx *txn) error {
		var err error
		st, ok, err = statusOf(tx, "id", id)
		return err
	})
	if err != nil {
		return Status{}, false, err
	}
	return st, ok, nil
}

// Window reports on openid's window.
func (s *SQLite) Window(ctx context.Context, openid string) (Window, error) {
	var w Window
	err := s.do(ctx, "Window", false, func(tx *txn) error {
		var err error
		w, err = window(tx, openid)
		return err
	})
	if err != nil {
		return Window{}, err
	}
	return w, nil
}

// CloseWindow records a 45015 answered to a call made at asked. closed_at
// keeps the latest such call: only an interaction later than it reopens
// the window (and it dates the row for pruning).
func (s *SQLite) CloseWindow(ctx context.Context, openid string, asked, _ time.Time) error {
	return s.write(ctx, &opRec{Kind: opCloseWindow, OpenID: openid, Asked: asked}, nil)
}

// closeWindow is CloseWindow in the writer.
func (s *SQLite) closeWindow(tx *txn, openid string, asked time.Time) error {
	delete(s.touched, markKey(openid)) // the next touch may reopen it: see touch
	return tx.exec(`INSERT INTO windows(openid, last, closed, closed_at) VALUES(?, 0, 1, ?)
		ON CONFLICT(openid) DO UPDATE SET closed = 1, closed_at = max(windows.closed_at, excluded.closed_at)
		WHERE windows.last <= excluded.closed_at`,
		openid, ms(asked))
}

// Pause stops claims until until.
func (s *SQLite) Pause(ctx context.Context, until time.Time) error {
	return s.write(ctx, &opRec{Kind: opPause, Until: until}, nil)
}

// pause is Pause in the writer.
func (s *SQLite) pause(tx *txn, until time.Time) error {
	return tx.exec(`INSERT INTO meta(key, value) VALUES('paused_until', ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value WHERE excluded.value > meta.value`, ms(until))
}

// TemplateFinished records a template delivery report.
func (s *SQLite) TemplateFinished(ctx context.Context, msgid int64, status string, now time.Time) (Status, bool, error) {
	var out opOut
	if err := s.write(ctx, &opRec{Kind: opTemplateFinished, MsgID: msgid, Status: status, Now: now}, &out); err != nil {
		return Status{}, false, err
	}
	return out.status, out.found, nil
}

// templateFinished is TemplateFinished in the writer.
func (s *SQLite) templateFinished(tx *txn, msgid int64, status string, now time.Time, out *opOut) error {
	out.status, out.found = Status{}, false
	n, err := tx.execN("UPDATE items SET template_status = ?, updated = ? WHERE msgid = ?", status, ms(now), msgid)
	if err != nil {
		return err
	}
	if n == 0 {
		return tx.exec("INSERT OR REPLACE INTO early(msgid, status, at) VALUES(?, ?, ?)", msgid, status, ms(now))
	}
	out.status, out.found, err = statusOf(tx, "msgid", msgid)
	return err
}

// Pending counts the waiting items.
func (s *SQLite) Pending(ctx context.Context) (int, error) {
	var n int
	err := s.do(ctx, "Pending", false, func(tx *txn) error {
		_, err := tx.row("SELECT COUNT(*) FROM items WHERE state = 0", nil, &n)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// prune deletes, a chunk at a time, ended items past their retention and
// expired marks, keys, windows and early reports. more reports whether a
// chunk was full, so that the caller prunes again.
func (s *SQLite) prune(tx *txn, now time.Time) (more bool, err error) {
	n := ms(now)
	steps := []struct {
		q   string
		arg int64
	}{
		{"DELETE FROM items WHERE seq IN (SELECT seq FROM items WHERE state <> 0 AND updated < ? LIMIT ?)", ms(now.Add(-s.o.Retention))},
		{"DELETE FROM marks WHERE key IN (SELECT key FROM marks WHERE expires <= ? LIMIT ?)", n},
		// The bindings' log has no index by expiry: the oldest are the
		// first to expire (sqlite_bindings.go).
		{"DELETE FROM bindings WHERE seq IN (SELECT seq FROM bindings ORDER BY seq LIMIT ?2) AND expires * 1000 <= ?1", n},
		{"DELETE FROM idem WHERE key IN (SELECT key FROM idem WHERE expires <= ? LIMIT ?)", n},
		{"DELETE FROM early WHERE msgid IN (SELECT msgid FROM early WHERE at < ? LIMIT ?)", ms(now.Add(-earlyTemplateTTL))},
		{"DELETE FROM media WHERE key IN (SELECT key FROM media WHERE expires <= ? LIMIT ?)", n},
		{"DELETE FROM states WHERE openid IN (SELECT openid FROM states WHERE expires <= ? LIMIT ?)", n},
	}
	for _, st := range steps {
		n, err := tx.execN(st.q, st.arg, pruneRows)
		if err != nil {
			return false, err
		}
		more = more || n == pruneRows
	}
	return more, s.sweepWindows(tx, ms(now.Add(-s.o.WindowTTL)))
}

// sweepWindows deletes the lapsed windows among the next pruneRows users
// after the sweep's cursor, and moves the cursor on (back to the start
// after the last user). Windows have no index by time — every callback
// would pay for it — so they are swept in key order, a chunk each round:
// a million users are gone through every half hour.
func (s *SQLite) sweepWindows(tx *txn, before int64) error {
	var n int
	var last sql.NullString
	if _, err := tx.row("SELECT COUNT(*), MAX(openid) FROM (SELECT openid FROM windows WHERE openid > ? ORDER BY openid LIMIT ?)",
		[]any{s.windowCursor, pruneRows}, &n, &last); err != nil {
		return err
	}
	if last.Valid {
		if err := tx.exec("DELETE FROM windows WHERE openid > ? AND openid <= ? AND max(last, closed_at) < ?",
			s.windowCursor, last.String, before); err != nil {
			return err
		}
	}
	s.windowCursor = last.String
	if n < pruneRows {
		s.windowCursor = "" // the end: start over next round
	}
	return nil
}

// Media returns an upload recorded for key, unexpired at now.
func (s *SQLite) Media(ctx context.Context, key string, now time.Time) (Media, bool, error) {
	var m Media
	var ok bool
	err := s.do(ctx, "Media", false, func(tx *txn) error {
		var mod, expires int64
		found, err := tx.row("SELECT id, size, mod_ns, expires FROM media WHERE key = ? AND expires > ?",
			[]any{key, ms(now)}, &m.ID, &m.Size, &mod, &expires)
		if err != nil || !found {
			m, ok = Media{}, false
			return err
		}
		m.ModTime, m.Expires, ok = time.Unix(0, mod), fromMS(expires), true
		return nil
	})
	if err != nil {
		return Media{}, false, err
	}
	return m, ok, nil
}

// PutMedia records an upload under key.
func (s *SQLite) PutMedia(ctx context.Context, key string, m Media) error {
	return s.write(ctx, &opRec{Kind: opPutMedia, Key: key, Media: &m}, nil)
}

// putMedia is PutMedia in the writer.
func (s *SQLite) putMedia(tx *txn, key string, m *Media) error {
	return tx.exec("INSERT OR REPLACE INTO media(key, id, size, mod_ns, expires) VALUES(?, ?, ?, ?, ?)",
		key, m.ID, m.Size, m.ModTime.UnixNano(), ms(m.Expires))
}

// DeleteMedia forgets the upload under key.
func (s *SQLite) DeleteMedia(ctx context.Context, key string) error {
	return s.write(ctx, &opRec{Kind: opDeleteMedia, Key: key}, nil)
}

// deleteMedia is DeleteMedia in the writer.
func (s *SQLite) deleteMedia(tx *txn, key string) error {
	return tx.exec("DELETE FROM media WHERE key = ?", key)
}
