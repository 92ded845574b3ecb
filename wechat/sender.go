package wechat

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Errors of Sender.Enqueue. Nothing of a refused call is queued.
var (
	ErrQueueFull       = errors.New("wechat: send queue is full")
	ErrSenderClosed    = errors.New("wechat: sender is shut down")
	ErrInvalidOutgoing = errors.New("wechat: invalid outgoing message")
)

// SenderOptions configures a Sender. Client is required; zero values take
// the defaults noted.
type SenderOptions struct {
	Client       *Client
	Workers      int           // users served in parallel; default 8
	QueueSize    int           // messages waiting, over all users; default 10000
	MaxAttempts  int           // send calls per message; default 4
	MaxRetryTime time.Duration // no retry starts later than this after the first attempt; default 30s
	BaseBackoff  time.Duration // first retry's wait, doubled each time, jittered; default 500ms
	MaxBackoff   time.Duration // cap of one wait; default 10s

	// Typing shows the typing indicator before a reply that cannot go
	// out at once: one whose media file is being uploaded, or one waiting
	// to be retried.
	Typing bool

	// Window, when set, keeps replies from users known to be outside the
	// 48-hour window, and learns from WeChat's 45015 answers.
	Window *Window

	// KfAccount sends customer-service messages that name no account as
	// this one (rules.yaml's kf_account).
	KfAccount string

	StatusTTL time.Duration // how long Status can report on a finished message; default DefaultStatusTTL
	StatusMax int           // how many finished messages it can report on; default DefaultStatusMax
	Logger    *slog.Logger  // nil means slog.Default()

	// OnResult, when set, is called once per accepted message with its
	// final outcome, from a worker: it must not block for long.
	OnResult func(Result)
}

// Sender delivers Outgoing messages through the customer-service and
// template APIs. Messages to one user go out strictly in the order they
// were enqueued, one at a time; different users are served in parallel
// by a bounded pool of workers behind a bounded queue. A message waiting
// out a retry's backoff keeps its user's later messages behind it, but
// not a worker. Every accepted message ends delivered or failed with a
// reason, in Status, in Stats, in one log line and in OnResult; Shutdown
// drains the queue.
type Sender struct {
	o      SenderOptions
	client *Client
	log    *slog.Logger
	status *statusStore
	n      senderCounters

	// ctx is cancelled only when Shutdown's deadline passes, to abort
	// the calls in flight.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	cond    *sync.Cond
	lanes   map[string]*lane // users with messages waiting or being sent
	ready   []*lane          // lanes waiting for a worker, oldest first
	queued  int              // messages waiting: for a first try or a retry
	parked  int              // lanes waiting for a retry's backoff to end
	closed  bool
	aborted bool // Shutdown's deadline passed: nothing more is tried
	started bool
	wg      sync.WaitGroup
	done    chan struct{} // closed when every worker has returned
}

// job is one accepted Outgoing, and how far its delivery got.
type job struct {
	out     Outgoing
	openid  string
	msgtype string
	typing  bool // the typing indicator was shown for it

	started    time.Time      // the first try
	tries      int            // tries made
	o          outcome        // so far
	ready      *CustomMessage // as sent: kf_account added, files uploaded
	refs       []mediaRef     // the files ready's media_ids came from
	reuploaded bool           // after a 40007
}

// NewSender returns a Sender; it sends nothing until Start.
func NewSender(o SenderOptions) *Sender {
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 10000
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 4
	}
	if o.MaxRetryTime <= 0 {
		o.MaxRetryTime = 30 * time.Second
	}
	if o.BaseBackoff <= 0 {
		o.BaseBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
	if o.StatusTTL <= 0 {
		o.StatusTTL = DefaultStatusTTL
	}
	if o.StatusMax <= 0 {
		o.StatusMax = DefaultStatusMax
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Sender{
		o:      o,
		client: o.Client,
		log:    o.Logger,
		status: newStatusStore(o.StatusTTL, o.StatusMax),
		lanes:  make(map[string]*lane),
		done:   make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.cond = sync.NewCond(&s.mu)
	return s
}

// Start starts the workers. Calling it again does nothing.
func (s *Sender) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.startLocked()
}

func (s *Sender) startLocked() {
	if s.started {
		return
	}
	s.started = true
	s.wg.Add(s.o.Workers)
	for range s.o.Workers {
		go s.worker()
	}
	go func() {
		s.wg.Wait()
		close(s.done)
	}()
	go s.janitor()
}

// Enqueue accepts messages for delivery and returns their IDs, assigning
// a random one to each Outgoing without. It accepts all of them or none:
// ErrInvalidOutgoing (wrapped, naming the item), ErrQueueFull or
// ErrSenderClosed.
func (s *Sender) Enqueue(items ...Outgoing) ([]string, error) {
	jobs := make([]*job, len(items))
	for i, it := range items {
		openid, msgtype, err := checkOutgoing(it)
		if err != nil {
			s.n.rejected.Add(int64(len(items)))
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		if it.ID == "" {
			it.ID = newOutgoingID()
		}
		jobs[i] = &job{out: it, openid: openid, msgtype: msgtype}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		s.n.rejected.Add(int64(len(items)))
		return nil, ErrSenderClosed
	case s.queued+len(jobs) > s.o.QueueSize:
		s.n.rejected.Add(int64(len(items)))
		return nil, ErrQueueFull
	}
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.out.ID
		s.status.update(j.out.ID, func(st *Status) {
			st.State, st.OpenID, st.Rule, st.MsgType = StateQueued, j.openid, j.out.Rule, j.msgtype
		})
		l, ok := s.lanes[j.openid]
		if !ok {
			l = &lane{openid: j.openid}
			s.lanes[j.openid] = l
			s.ready = append(s.ready, l)
		}
		l.jobs = append(l.jobs, j)
	}
	s.queued += len(jobs)
	s.n.queued.Add(int64(len(jobs)))
	s.n.enqueued.Add(int64(len(jobs)))
	s.cond.Broadcast()
	return ids, nil
}

// checkOutgoing returns the recipient and message type of o, or why it
// cannot be sent.
func checkOutgoing(o Outgoing) (openid, msgtype string, err error) {
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
		return o.Template.ToUser, "template", nil
	}
	return "", "", fmt.Errorf("%w: no message", ErrInvalidOutgoing)
}

func newOutgoingID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// Shutdown stops accepting messages and waits until everything queued and
// in flight has been delivered or has failed. If ctx ends first, the
// messages still waiting (queued, or between retries) are failed with
// reason "shutdown", the calls in flight are aborted, and ctx.Err() is
// returned: nothing accepted vanishes without a result. A message whose
// send call was cut off on the wire fails with "shutdown in flight":
// WeChat may have delivered it. Shutdown starts the workers if Start was
// never called, so the queue still drains.
func (s *Sender) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.startLocked()
	s.cond.Broadcast()
	s.mu.Unlock()

	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
	}

	s.mu.Lock()
	s.aborted = true
	var dropped []*job
	for _, l := range s.lanes {
		if l.retry != nil {
			if l.timer != nil { // parked; else unparked and in ready
				l.timer.Stop() // unpark, if it fires anyway, sees no retry
				l.timer = nil
			}
			dropped = append(dropped, l.retry)
			l.retry = nil
		}
		dropped = append(dropped, l.jobs...)
		l.jobs = nil
	}
	s.ready = nil
	s.parked = 0
	s.n.queued.Add(-int64(s.queued))
	s.queued = 0
	s.cond.Broadcast()
	s.mu.Unlock()

	s.cancel()
	for _, j := range dropped {
		took := time.Duration(0)
		if j.tries > 0 {
			took = time.Since(j.started)
		}
		s.finish(j, s.abandoned(j), took)
	}
	<-s.done
	return ctx.Err()
}

// Status reports on the message with the given ID: always while it is
// queued or being sent, then for StatusTTL after it finished, as long as
// it is among the last StatusMax to finish.
func (s *Sender) Status(id string) (Status, bool) { return s.status.get(id) }

// Stats returns the Sender's counters.
func (s *Sender) Stats() Stats { return s.n.snapshot() }

// TemplateFinished records the TEMPLATESENDJOBFINISH event for msgID (the
// event's MsgID) with its Status, such as "success" or "failed:user
// block": it is logged with the user, template and rule it reports on,
// and the message's Status gets TemplateStatus.
func (s *Sender) TemplateFinished(msgID string, status string) {
	rec, ok := s.status.templateFinished(msgID, status)
	if !ok {
		// Kept a minute in case the send is still being recorded: the
		// event can overtake template/send's answer.
		s.log.Info("template job finished for an unknown msgid", "template_msgid", msgID, "status", status)
		return
	}
	s.templateFinished(rec, strings.TrimSpace(msgID), status)
}

// templateFinished logs a delivery report with the message it is about.
func (s *Sender) templateFinished(rec templateRecord, msgID, status string) {
	level := slog.LevelInfo
	if status != "success" {
		level = slog.LevelWarn
	}
	s.log.Log(context.Background(), level, "template job finished",
		"id", rec.ID, "openid", rec.OpenID, "msg_id", rec.InMsgID, "rule", rec.Rule,
		"template_id", rec.TemplateID, "template_msgid", msgID, "status", status)
	s.status.updateExisting(rec.ID, func(st *Status) { st.TemplateStatus = status })
}
