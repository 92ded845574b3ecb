// Package store is where wxreply keeps what it must not forget: the
// outbox of accepted messages, the marks that recognise WeChat's retries,
// the push API's idempotency keys and statuses, the users' 48-hour
// windows, template msgid correlation and the account-wide pause after
// WeChat's 45009.
//
// Store is the one interface; Open picks the implementation from
// WXREPLY_STORE: a directory (SQLite, kept across restarts), "memory"
// (SQLite in memory, nothing kept) or, later, Redis. Every implementation
// keeps the same promises, checked by the shared tests in storetest:
// a call that returns nil has been committed, and one user's items are
// handed out one at a time, in the order they were accepted.
package store

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// Errors of a Store.
var (
	// ErrIdempotencyConflict: the Idempotency-Key was first used for a
	// request with another fingerprint. Nothing was recorded.
	ErrIdempotencyConflict = errors.New("store: idempotency key used for a different request")

	// ErrLeaseLost: the claim is no longer the lane's (its lease ran out
	// and the lane was claimed again). Nothing was changed.
	ErrLeaseLost = errors.New("store: lease lost")

	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("store: closed")

	// ErrQueryReused: the batch's signed query was first seen with
	// another body. Nothing was recorded.
	ErrQueryReused = errors.New("store: signed query used for a different body")
)

// Store is the state of a wxreply server, shared by every instance that
// opens the same one. Times are passed in, never read from a clock, so
// that the caller's clock decides; they are kept to the millisecond.
type Store interface {
	// Accept records a batch atomically: the retry-dedupe mark, the
	// idempotency key, the window touch and the items, all or nothing.
	// When the mark or the key is already present nothing is recorded
	// and Accepted.Duplicate reports what the first batch recorded. An
	// idempotency key of another fingerprint is ErrIdempotencyConflict; a
	// signed query kept with another body, ErrQueryReused.
	Accept(ctx context.Context, b *Batch) (Accepted, error)

	// Claim hands out up to max lanes whose head item is due at now,
	// each leased for lease: no other claim takes that lane until the
	// lease ends or the claim is completed, retried or released. next
	// is when the earliest lane not handed out is due (zero: none
	// waiting); while the account is paused Claim hands out nothing and
	// next is the end of the pause.
	Claim(ctx context.Context, now time.Time, max int, lease time.Duration) (claims []Claim, next time.Time, err error)

	// Complete ends a claimed item delivered or failed and frees its
	// lane for the next item. A template msgid in f is recorded for
	// TemplateFinished; if its event arrived first, the returned Status
	// carries the event's status.
	Complete(ctx context.Context, c Claim, f Final) (Status, error)

	// Retry parks a claimed item until at, with its attempts and last
	// error; its lane stays behind it.
	Retry(ctx context.Context, c Claim, r Retry) error

	// Release gives a claimed item back untried, due at now: for a
	// shutdown, or a pause that started after the claim.
	Release(ctx context.Context, c Claim, now time.Time) error

	// Extend renews the leases of claims still held, to until: a send
	// that takes longer than a lease (an upload, a slow WeChat) keeps its
	// lane, while the lanes of an instance that died are taken over one
	// lease after its last renewal. It returns the IDs of the claims'
	// items whose lease was lost; those were not extended.
	Extend(ctx context.Context, claims []Claim, until time.Time) (lost []string, err error)

	// Status reports on an item by ID while it is waiting and for the
	// retention period after it ended.
	Status(ctx context.Context, id string) (Status, bool, error)

	// Window reports what the store knows of openid's window.
	Window(ctx context.Context, openid string) (Window, error)

	// CloseWindow records WeChat's 45015 for openid, answered to a call
	// made at asked: the window stays closed until an interaction later
	// than asked.
	CloseWindow(ctx context.Context, openid string, asked, now time.Time) error

	// Pause stops Claim for the whole account until until (45009: the
	// daily quota is spent). A later pause wins; an earlier one changes
	// nothing.
	Pause(ctx context.Context, until time.Time) error

	// TemplateFinished records a TEMPLATESENDJOBFINISH event's status
	// for msgid. ok is true, with the Status of the item it reports on,
	// when that item is known; otherwise the status waits a minute for
	// the item's Complete (the event can overtake template/send's answer).
	TemplateFinished(ctx context.Context, msgid int64, status string, now time.Time) (st Status, ok bool, err error)

	// Pending counts the items accepted and not yet ended.
	Pending(ctx context.Context) (int, error)

	// Media returns the media_id uploaded for key (a file, by the
	// client's own naming) while it has not expired at now.
	Media(ctx context.Context, key string, now time.Time) (Media, bool, error)

	// PutMedia records an upload; DeleteMedia forgets one (WeChat
	// refused its media_id).
	PutMedia(ctx context.Context, key string, m Media) error
	DeleteMedia(ctx context.Context, key string) error

	// State returns openid's conversation state at now: the name a batch
	// gave it (Batch.SetState) while that has neither expired nor been
	// cleared.
	State(ctx context.Context, openid string, now time.Time) (name string, ok bool, err error)

	// Healthy is nil while the store can be written, else why not.
	Healthy() error

	// Stats reports the store's own figures.
	Stats() Stats

	// Close stops the store's background work and releases it.
	Close() error
}

// Batch is what one callback or push records.
type Batch struct {
	Now time.Time

	// Dedupe is the retry-dedupe key of a callback (MsgId, or the
	// event's key); "" for none. Answer is the passive reply that the
	// first copy got, returned to the retries.
	Dedupe    string
	DedupeTTL time.Duration
	Answer    []byte

	// IdemKey is the push API's Idempotency-Key, "" for none, with the
	// request's fingerprint.
	IdemKey         string
	IdemFingerprint []byte
	IdemTTL         time.Duration

	// Touch is the openid whose window the callback opens at Now, "" for
	// none.
	Touch string

	// Query is the callback's signed query (signature, timestamp and
	// nonce), "" for none, and QueryBody the hash of its body: while the
	// query is kept (QueryTTL) it serves that body only, and a batch with
	// another is ErrQueryReused. The same body again is WeChat's retry.
	Query     string
	QueryBody []byte
	QueryTTL  time.Duration
	// QueryAt is the signed query's timestamp (part of Query), zero when
	// unknown: a query signed no later than a binding the embedded store
	// had to forget while in force is refused (sqlite_bindings.go).
	QueryAt time.Time

	// ClearState forgets the conversation state of the openid it names,
	// "" for none; SetState then gives a user one, nil for none. They are
	// written with the rest of the batch or not at all: a duplicate sets
	// nothing.
	ClearState string
	SetState   *UserState

	Items []NewItem
}

// Empty reports whether the batch would record nothing.
func (b *Batch) Empty() bool {
	return b.Dedupe == "" && b.IdemKey == "" && b.Touch == "" && len(b.Items) == 0 && // a Query alone binds nothing worth a write
		b.ClearState == "" && b.SetState == nil
}

// UserState is a conversation state to give a user: Name, from the
// batch's Now for TTL (a rule's set_state).
type UserState struct {
	OpenID string
	Name   string
	TTL    time.Duration
}

// NewItem is one message to record in the outbox.
type NewItem struct {
	ID      string // unique, chosen by the caller
	OpenID  string // the lane
	MsgType string // "template" for template messages
	Rule    string
	InMsgID string
	Payload []byte // the message, opaque to the store
}

// Accepted is what Accept recorded, or what the first batch with the same
// mark or key recorded when Duplicate is true.
type Accepted struct {
	IDs       []string
	Answer    []byte
	Duplicate bool
}

// Item is one message in the outbox.
type Item struct {
	NewItem
	Seq       int64 // the order of acceptance; a lane hands out the lowest first
	Attempts  int
	LastError string
	Created   time.Time
	NextAt    time.Time
}

// Claim is one leased lane and its head item. Token fences the lease:
// Complete, Retry and Release fail with ErrLeaseLost once the lane was
// claimed again.
type Claim struct {
	Item   Item
	Token  int64
	Window Window // the user's window, read in the same step
}

// Window is what the store knows of a user's 48-hour window.
type Window struct {
	Known  bool      // an interaction or a 45015 was recorded
	Last   time.Time // the last interaction that opened it
	Closed bool      // WeChat answered 45015 since Last
}

// Final is how a claimed item ended.
type Final struct {
	Now       time.Time
	Delivered bool
	Reason    string // why it failed
	ErrCode   int
	Attempts  int
	MsgID     int64 // template msgid, 0 for none
	LastError string
}

// Retry is when a claimed item is tried again, and how far it got.
type Retry struct {
	Now       time.Time
	At        time.Time
	Attempts  int
	LastError string
}

// States of an item.
const (
	StateQueued    = "queued"
	StateDelivered = "delivered"
	StateFailed    = "failed"
)

// Status is what the store knows of one item.
type Status struct {
	ID             string
	State          string
	Reason         string
	ErrCode        int
	Attempts       int
	OpenID         string
	Rule           string
	InMsgID        string
	MsgType        string
	MsgID          int64
	TemplateStatus string
	LastError      string
	Created        time.Time
	Updated        time.Time
	NextAt         time.Time // while queued: when it is next tried
}

// Media is an uploaded file's media_id, with what the file was when it
// was uploaded, so that a file changed since is uploaded again.
type Media struct {
	ID      string
	Size    int64
	ModTime time.Time // to the nanosecond, as the file system gives it
	Expires time.Time // WeChat keeps temporary media three days
}

// Stats are a store's own figures since it was opened.
type Stats struct {
	Commits       int64         // transactions committed
	Ops           int64         // operations in them
	CommitFailed  int64         // transactions that failed
	CommitSeconds float64       // time spent committing, in all
	LastCommit    time.Duration // how long the last one took

	// CommitBuckets counts the transactions by how long they took: entry
	// i those that took at most CommitBounds[i], the last one the rest.
	CommitBuckets [len(CommitBounds) + 1]int64
}

// CommitBounds are the upper bounds of Stats.CommitBuckets.
var CommitBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second,
}

// counters are a store's Stats as it counts them, safe for concurrent use.
type counters struct {
	commits, ops, failed atomic.Int64
	nanos, last          atomic.Int64
	buckets              [len(CommitBounds) + 1]atomic.Int64
}

// commit counts a transaction of ops operations that took d.
func (c *counters) commit(ops int, d time.Duration) {
	c.commits.Add(1)
	c.ops.Add(int64(ops))
	c.nanos.Add(int64(d))
	c.last.Store(int64(d))
	i := 0
	for i < len(CommitBounds) && d > CommitBounds[i] {
		i++
	}
	c.buckets[i].Add(1)
}

func (c *counters) snapshot() Stats {
	st := Stats{
		Commits:       c.commits.Load(),
		Ops:           c.ops.Load(),
		CommitFailed:  c.failed.Load(),
		CommitSeconds: time.Duration(c.nanos.Load()).Seconds(),
		LastCommit:    time.Duration(c.last.Load()),
	}
	for i := range st.CommitBuckets {
		st.CommitBuckets[i] = c.buckets[i].Load()
	}
	return st
}
