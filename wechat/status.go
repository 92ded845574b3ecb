package wechat

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// States of an Outgoing, as Status reports them.
const (
	StateQueued    = "queued"
	StateSending   = "sending"
	StateDelivered = "delivered"
	StateFailed    = "failed"
)

// Reasons a Sender gives for messages it did not deliver, besides the
// short names of WeChat's error codes (see reasonFor).
const (
	ReasonOutOfWindow = "out of window"
	ReasonShutdown    = "shutdown" // Shutdown's deadline passed before it was sent

	// ReasonShutdownInFlight: Shutdown's deadline cut the send call off
	// half way. WeChat may or may not have delivered it.
	ReasonShutdownInFlight = "shutdown in flight"
)

// DefaultStatusTTL is how long a Sender can report on a finished
// message, and DefaultStatusMax on how many at most.
const (
	DefaultStatusTTL = 24 * time.Hour
	DefaultStatusMax = 100000
)

// Status is what a Sender knows of one Outgoing, by its ID.
type Status struct {
	ID       string `json:"id"`
	State    string `json:"state"` // StateQueued, StateSending, StateDelivered, StateFailed
	Reason   string `json:"reason,omitempty"`
	ErrCode  int    `json:"errcode,omitempty"`
	Attempts int    `json:"attempts"`
	OpenID   string `json:"openid,omitempty"`
	Rule     string `json:"rule,omitempty"`
	MsgType  string `json:"msgtype,omitempty"` // "template" for template messages

	MsgID          int64  `json:"msgid,omitempty"`           // template msgid
	TemplateStatus string `json:"template_status,omitempty"` // from TEMPLATESENDJOBFINISH

	Updated time.Time `json:"updated"`
}

// Result is the final outcome of one Outgoing, handed to
// SenderOptions.OnResult once: delivered, or failed with a reason.
type Result struct {
	Outgoing  Outgoing
	Delivered bool
	Reason    string // empty when delivered
	ErrCode   int    // WeChat's errcode of the last answer, 0 if none
	Attempts  int    // tries of the send API (one that found no token counts); 0: never tried
	MsgID     int64  // template msgid
	Err       error  // the last error, nil when delivered
	Duration  time.Duration
}

// Stats are a Sender's counters since it was made.
type Stats struct {
	Enqueued    int64 // accepted by Enqueue
	Rejected    int64 // refused by Enqueue: queue full, closed or invalid
	Delivered   int64
	Failed      int64 // includes OutOfWindow and shutdown losses
	Retried     int64 // attempts after the first, over all messages
	OutOfWindow int64 // failed because the user's window was closed
	Queued      int64 // waiting now, for a first try or a retry
	InFlight    int64 // being sent now
}

type senderCounters struct {
	enqueued, rejected, delivered, failed, retried, outOfWindow, queued, inFlight atomic.Int64
}

func (c *senderCounters) snapshot() Stats {
	return Stats{
		Enqueued:    c.enqueued.Load(),
		Rejected:    c.rejected.Load(),
		Delivered:   c.delivered.Load(),
		Failed:      c.failed.Load(),
		Retried:     c.retried.Load(),
		OutOfWindow: c.outOfWindow.Load(),
		Queued:      c.queued.Load(),
		InFlight:    c.inFlight.Load(),
	}
}

// statusStore keeps Status by Outgoing ID, and template msgid → the
// message it reports on. Messages still queued or being sent are always
// known; finished ones are kept for ttl after their last change and at
// most max of them, the oldest forgotten first, so that a busy server's
// memory does not grow with a day of traffic.
type statusStore struct {
	mu        sync.Mutex
	active    map[string]Status // queued or sending
	done      *recent[Status]   // delivered or failed
	templates *recent[templateRecord]

	// early holds TEMPLATESENDJOBFINISH events whose msgid was not
	// recorded yet: the event can overtake the answer of template/send.
	early *recent[string]
}

// templateRecord is what a TEMPLATESENDJOBFINISH event is logged with.
type templateRecord struct {
	ID, OpenID, TemplateID, Rule, InMsgID string
}

// earlyEventTTL is how long an event for an unknown msgid waits for its
// send to be recorded. Events of template messages sent by other
// systems for the same account never are, so it is short.
const earlyEventTTL = time.Minute

func newStatusStore(ttl time.Duration, max int) *statusStore {
	return &statusStore{
		active:    make(map[string]Status),
		done:      newRecent[Status](ttl, max),
		templates: newRecent[templateRecord](ttl, max),
		early:     newRecent[string](earlyEventTTL, max),
	}
}

func final(state string) bool { return state == StateDelivered || state == StateFailed }

func (st *statusStore) get(id string) (Status, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.getLocked(id, time.Now())
}

func (st *statusStore) getLocked(id string, now time.Time) (Status, bool) {
	if s, ok := st.active[id]; ok {
		return s, true
	}
	return st.done.get(id, now)
}

func (st *statusStore) update(id string, f func(*Status)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	now := time.Now()
	s, _ := st.getLocked(id, now)
	st.putLocked(id, s, f, now)
}

// updateExisting is update for a Status that must still be known: a late
// event for an expired message must not bring back a half-empty Status.
func (st *statusStore) updateExisting(id string, f func(*Status)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	now := time.Now()
	if s, ok := st.getLocked(id, now); ok {
		st.putLocked(id, s, f, now)
	}
}

func (st *statusStore) putLocked(id string, s Status, f func(*Status), now time.Time) {
	s.ID = id
	f(&s)
	s.Updated = now
	if final(s.State) {
		delete(st.active, id)
		st.done.set(id, s, now)
		return
	}
	st.done.delete(id)
	st.active[id] = s
}

// recordTemplate keeps what msgID's delivery report will be logged with,
// and returns the report's status if it has already arrived.
func (st *statusStore) recordTemplate(msgID int64, r templateRecord) (string, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	key, now := strconv.FormatInt(msgID, 10), time.Now()
	st.templates.set(key, r, now)
	status, arrived := st.early.take(key, now)
	return status, arrived
}

// templateFinished returns the record of msgID, or keeps status for
// recordTemplate when there is none yet.
func (st *statusStore) templateFinished(msgID, status string) (templateRecord, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	key, now := strings.TrimSpace(msgID), time.Now()
	if r, ok := st.templates.get(key, now); ok {
		return r, true
	}
	st.early.set(key, status, now)
	return templateRecord{}, false
}

func (st *statusStore) deleteExpired() {
	st.mu.Lock()
	defer st.mu.Unlock()
	now := time.Now()
	st.done.deleteExpired(now)
	st.templates.deleteExpired(now)
	st.early.deleteExpired(now)
}
