package wechat

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/patrickmn/go-cache"
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
	ReasonShutdown    = "shutdown"
)

// DefaultStatusTTL is how long a Sender can report on a message.
const DefaultStatusTTL = 24 * time.Hour

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
	Attempts  int    // calls of the send API, 0 when never sent
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
	Queued      int64 // waiting now
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
// message it reports on, each for a bounded time.
type statusStore struct {
	mu        sync.Mutex // serialises read-modify-write of one Status
	ttl       time.Duration
	byID      *cache.Cache
	templates *cache.Cache // strconv(msgid) → templateRecord
}

// templateRecord is what a TEMPLATESENDJOBFINISH event is logged with.
type templateRecord struct {
	ID, OpenID, TemplateID, Rule, InMsgID string
}

func newStatusStore(ttl time.Duration) *statusStore {
	// No janitors: the Sender's own goroutine calls deleteExpired.
	return &statusStore{
		ttl:       ttl,
		byID:      cache.New(ttl, 0),
		templates: cache.New(ttl, 0),
	}
}

func (st *statusStore) get(id string) (Status, bool) {
	v, ok := st.byID.Get(id)
	if !ok {
		return Status{}, false
	}
	return v.(Status), true
}

func (st *statusStore) update(id string, f func(*Status)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s, _ := st.get(id)
	s.ID = id
	f(&s)
	s.Updated = time.Now()
	st.byID.Set(id, s, cache.DefaultExpiration)
}

// updateExisting is update for a Status that must still be known: a late
// event for an expired message must not bring back a half-empty Status.
func (st *statusStore) updateExisting(id string, f func(*Status)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	s, ok := st.get(id)
	if !ok {
		return
	}
	f(&s)
	s.Updated = time.Now()
	st.byID.Set(id, s, cache.DefaultExpiration)
}

func (st *statusStore) recordTemplate(msgID int64, r templateRecord) {
	st.templates.Set(strconv.FormatInt(msgID, 10), r, cache.DefaultExpiration)
}

func (st *statusStore) template(msgID string) (templateRecord, bool) {
	v, ok := st.templates.Get(strings.TrimSpace(msgID))
	if !ok {
		return templateRecord{}, false
	}
	return v.(templateRecord), true
}

func (st *statusStore) deleteExpired() {
	st.byID.DeleteExpired()
	st.templates.DeleteExpired()
}
