// Package delivery is wxreply's outbox: it records every accepted reply
// and push in the store before the caller answers, and sends them through
// WeChat's customer-service and template APIs, one user's messages in
// order, many users in parallel, riding out outages with retries parked
// in the store. Use an Engine per server; every instance on one shared
// store sends from the same outbox.
package delivery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
)

// Errors of Engine.Accept. Nothing of a refused call is recorded.
var (
	ErrInvalidOutgoing = errors.New("delivery: invalid outgoing message")
	ErrClosed          = errors.New("delivery: shutting down")
	// ErrUnavailable wraps a store that could not record the batch: the
	// caller answers 503, and WeChat (or the push client) retries.
	ErrUnavailable = errors.New("delivery: store unavailable")
)

// Defaults of Options.
const (
	DefaultInFlight    = 128
	DefaultLease       = 30 * time.Second
	DefaultMaxAge      = 6 * time.Hour
	DefaultBaseBackoff = time.Second
	DefaultMaxBackoff  = time.Minute
	DefaultQuotaPause  = 10 * time.Minute
	DefaultWindow      = 48 * time.Hour
	DefaultDedupeTTL   = 60 * time.Second
	DefaultIdemTTL     = 24 * time.Hour
	DefaultPollEvery   = time.Second
)

// Options configures an Engine. Store and Client are required.
type Options struct {
	Store  store.Store
	Client *wechat.Client

	// InFlight is how many send calls may be under way at once, over all
	// users. At WeChat's 30 ms a call, 128 carry about 4,000 sends a
	// second.
	InFlight int

	// Lease is how long a claimed lane is held without renewal before
	// another claim (another instance, or this one after a crash) may
	// take it. The engine renews the leases of its sends every third of
	// one, so a lease needs to outlast a few store round trips, not a try.
	Lease time.Duration

	// MaxAge ends retrying: no retry is scheduled past an item's
	// acceptance plus MaxAge, and the item fails with its last reason.
	MaxAge time.Duration

	// BaseBackoff is the first retry's wait, doubled per retry up to
	// MaxBackoff, with jitter.
	BaseBackoff, MaxBackoff time.Duration

	// QuotaPause is how long sending pauses for the whole account after
	// WeChat's 45009 (the daily quota is spent); then sending resumes,
	// and a 45009 again pauses it again.
	QuotaPause time.Duration

	// Window is the length of the customer-service window.
	Window time.Duration

	// DedupeTTL is how long a callback's retry-dedupe mark is kept;
	// IdemTTL how long an Idempotency-Key.
	DedupeTTL, IdemTTL time.Duration

	// PollEvery bounds how long the engine waits before asking the store
	// for due work when nothing woke it: another instance's acceptance,
	// a lease that ran out.
	PollEvery time.Duration

	// Typing shows the typing indicator before a reply that waits for a
	// retry or an upload.
	Typing bool

	// KfAccount sends customer-service messages that name no account as
	// this one (rules.yaml's kf_account).
	KfAccount string

	Logger *slog.Logger
	Now    func() time.Time

	// OnResult, when set, is called once per item this engine ended, from
	// the goroutine that sent it: it must not block for long.
	OnResult func(Result)
}

// Result is how one item ended, for OnResult.
type Result struct {
	ID        string
	OpenID    string
	Rule      string
	Delivered bool
	Reason    string
	ErrCode   int
	Attempts  int
	MsgID     int64
	Err       error
}

// Engine accepts messages into the store and delivers them.
type Engine struct {
	o   Options
	st  store.Store
	api *wechat.Client
	log *slog.Logger
	now func() time.Time
	n   counters

	wake    chan struct{} // something was accepted or a slot freed
	stop    chan struct{} // closed by Shutdown: claim nothing more
	stopped atomic.Bool
	done    chan struct{} // closed when the dispatcher returned
	sends   sync.WaitGroup
	started atomic.Bool

	// callCtx is cancelled only when Shutdown's deadline passes, to cut
	// off the calls still at WeChat.
	callCtx    context.Context
	cancelCall context.CancelFunc

	busy      atomic.Int64
	flying    flight        // the sends under way, whose leases renew extends
	renewd    chan struct{} // closed by Shutdown once the sends ended: renew stops
	stopRenew sync.Once
}

// New returns an Engine; it sends nothing until Start.
func New(o Options) *Engine {
	if o.InFlight <= 0 {
		o.InFlight = DefaultInFlight
	}
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.BaseBackoff <= 0 {
		o.BaseBackoff = DefaultBaseBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.QuotaPause <= 0 {
		o.QuotaPause = DefaultQuotaPause
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.DedupeTTL <= 0 {
		o.DedupeTTL = DefaultDedupeTTL
	}
	if o.IdemTTL <= 0 {
		o.IdemTTL = DefaultIdemTTL
	}
	if o.PollEvery <= 0 {
		o.PollEvery = DefaultPollEvery
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	e := &Engine{
		o: o, st: o.Store, api: o.Client, log: o.Logger, now: o.Now,
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		renewd: make(chan struct{}),
	}
	e.callCtx, e.cancelCall = context.WithCancel(context.Background())
	return e
}

// Request is what one callback or push asks the engine to record.
type Request struct {
	// Dedupe is the callback's retry-dedupe key (wechat.Message.DedupeKey);
	// Answer the passive reply given to its first copy.
	Dedupe string
	Answer []byte

	// IdemKey and IdemFingerprint are a push's Idempotency-Key and the
	// fingerprint of its request.
	IdemKey         string
	IdemFingerprint []byte

	// Touch is the openid whose window the callback opens now.
	Touch string

	// Query and QueryBody bind the callback's signed query to the hash of
	// its body until QueryUntil (store.Batch.Query): another body under
	// it is refused with store.ErrQueryReused.
	Query      string
	QueryBody  []byte
	QueryUntil time.Time
	QueryAt    time.Time // the query's signed timestamp (store.Batch.QueryAt)

	// ClearState ends the conversation state of the openid it names;
	// SetState then gives a user one (store.Batch). Both are recorded
	// with the rest, or not at all.
	ClearState string
	SetState   *store.UserState

	Items []wechat.Outgoing
}

// Accepted is what Accept recorded; with Duplicate, what the first
// request with the same dedupe mark or idempotency key recorded.
type Accepted struct {
	IDs       []string
	Answer    []byte
	Duplicate bool
}

// Accept validates r's items, gives each without one an ID, and records
// everything in one step of the store; it returns once that is committed.
// Errors: ErrInvalidOutgoing (naming the item), store.ErrIdempotencyConflict,
// store.ErrQueryReused, ErrClosed, or ErrUnavailable wrapping the store's
// error.
func (e *Engine) Accept(ctx context.Context, r Request) (Accepted, error) {
	b := &store.Batch{
		Now:    e.now(),
		Dedupe: r.Dedupe, DedupeTTL: e.o.DedupeTTL, Answer: r.Answer,
		IdemKey: r.IdemKey, IdemFingerprint: r.IdemFingerprint, IdemTTL: e.o.IdemTTL,
		Touch: r.Touch,
		Query: r.Query, QueryBody: r.QueryBody, QueryAt: r.QueryAt,
		ClearState: r.ClearState, SetState: r.SetState,
		Items: make([]store.NewItem, len(r.Items)),
	}
	if r.Query != "" {
		b.QueryTTL = max(r.QueryUntil.Sub(b.Now), time.Second)
	}
	for i, o := range r.Items {
		openid, msgtype, err := checkOutgoing(o)
		if err != nil {
			return Accepted{}, fmt.Errorf("item %d: %w", i, err)
		}
		if o.ID == "" {
			o.ID = newID()
		}
		p, err := encodePayload(o)
		if err != nil {
			return Accepted{}, fmt.Errorf("item %d: %w: %v", i, ErrInvalidOutgoing, err)
		}
		b.Items[i] = store.NewItem{ID: o.ID, OpenID: openid, MsgType: msgtype, Rule: o.Rule, InMsgID: o.InMsgID, Payload: p}
	}
	if b.Empty() {
		return Accepted{}, nil
	}
	if e.stopped.Load() && len(b.Items) > 0 {
		return Accepted{}, ErrClosed
	}
	a, err := e.st.Accept(ctx, b)
	switch {
	case errors.Is(err, store.ErrIdempotencyConflict), errors.Is(err, store.ErrQueryReused):
		return Accepted{}, err
	case err != nil:
		return Accepted{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !a.Duplicate && len(b.Items) > 0 {
		e.n.accepted.Add(int64(len(b.Items)))
		e.poke()
	}
	return Accepted{IDs: a.IDs, Answer: a.Answer, Duplicate: a.Duplicate}, nil
}

// checkOutgoing returns the recipient and message type of o, or why it
// cannot be sent.
func checkOutgoing(o wechat.Outgoing) (openid, msgtype string, err error) {
	switch {
	case o.Custom != nil && o.Template != nil:
		return "", "", fmt.Errorf("%w: both a customer-service and a template message", ErrInvalidOutgoing)
	case o.Custom != nil:
		if o.Custom.ToUser == "" || o.Custom.MsgType == "" {
			return "", "", fmt.Errorf("%w: touser and msgtype are required", ErrInvalidOutgoing)
		}
		return o.Custom.ToUser, o.Custom.MsgType, nil
	case o.Template != nil:
		if o.Template.ToUser == "" || o.Template.TemplateID == "" {
			return "", "", fmt.Errorf("%w: touser and template_id are required", ErrInvalidOutgoing)
		}
		return o.Template.ToUser, MsgTypeTemplate, nil
	}
	return "", "", fmt.Errorf("%w: no message", ErrInvalidOutgoing)
}

// MsgTypeTemplate is the message type the outbox gives template messages.
const MsgTypeTemplate = "template"

// newID is a message's ID: the time in milliseconds, then 80 random
// bits, in hex. IDs made later sort later, so the store's index of them
// grows at one end instead of being written all over.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[6:]) // crypto/rand.Read never fails (Go 1.24+)
	ms := uint64(time.Now().UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	return hex.EncodeToString(b[:])
}

// Status reports on an item by its ID.
func (e *Engine) Status(ctx context.Context, id string) (store.Status, bool, error) {
	return e.st.Status(ctx, id)
}

// WindowOpen reports whether openid's window is open now, and whether the
// store knows the user at all. Callers send when open or when !known: the
// window may have been opened before the store was.
func (e *Engine) WindowOpen(ctx context.Context, openid string) (open, known bool, err error) {
	w, err := e.st.Window(ctx, openid)
	if err != nil || !w.Known {
		return false, false, err
	}
	return e.windowOpen(w, e.now()), true, nil
}

func (e *Engine) windowOpen(w store.Window, now time.Time) bool {
	return !w.Closed && now.Sub(w.Last) < e.o.Window
}

// State returns openid's conversation state now, "" for none.
func (e *Engine) State(ctx context.Context, openid string) (string, error) {
	name, _, err := e.st.State(ctx, openid, e.now())
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return name, nil
}

// TemplateFinished records the TEMPLATESENDJOBFINISH event for msgID (the
// event's MsgID) with its Status, such as "success" or "failed:user
// block", and logs it with the message it reports on.
func (e *Engine) TemplateFinished(ctx context.Context, msgID, status string) error {
	id, err := strconv.ParseInt(strings.TrimSpace(msgID), 10, 64)
	if err != nil {
		e.log.Info("template job finished with a msgid that is not a number", "template_msgid", msgID, "status", status)
		return nil
	}
	st, ok, err := e.st.TemplateFinished(ctx, id, status, e.now())
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !ok {
		// Kept a minute in case the send is still being recorded: the
		// event can overtake template/send's answer.
		e.log.Info("template job finished for an unknown msgid", "template_msgid", id, "status", status)
		return nil
	}
	e.logTemplateFinished(st, status)
	return nil
}

func (e *Engine) logTemplateFinished(st store.Status, status string) {
	level := slog.LevelInfo
	if status != "success" {
		level = slog.LevelWarn
	}
	e.log.Log(context.Background(), level, "template job finished",
		"id", st.ID, "openid", st.OpenID, "msg_id", st.InMsgID, "rule", st.Rule,
		"template_msgid", st.MsgID, "status", status)
}

// Pending counts the items accepted and not yet ended, over every
// instance on the store.
func (e *Engine) Pending(ctx context.Context) (int, error) { return e.st.Pending(ctx) }

// poke wakes the dispatcher without blocking.
func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}
