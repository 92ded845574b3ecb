package wechat

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"time"
)

// outcome is how one message ended.
type outcome struct {
	delivered bool
	reason    string // set when known before describe: out of window, shutdown, cut off
	errCode   int
	attempts  int
	lastCall  time.Time // when the last send call was made
	msgID     int64
	err       error
}

// templateReport is a TEMPLATESENDJOBFINISH event waiting to be logged.
type templateReport struct {
	rec    templateRecord
	status string
}

// deliver makes one try at j: an attempt at its send, with whatever
// uploads it needs first. When a retry is due it returns how long to wait
// before the next try, and the worker parks j's lane for that long
// instead of sleeping, so that other users are served meanwhile; else it
// records the outcome and returns 0. No try starts later than
// MaxRetryTime after the first.
func (s *Sender) deliver(j *job) (retryIn time.Duration) {
	s.n.inFlight.Add(1)
	defer s.n.inFlight.Add(-1)
	if j.tries == 0 {
		j.started = time.Now()
		s.status.update(j.out.ID, func(st *Status) { st.State = StateSending })
		if s.outOfWindow(j) {
			j.o.reason = ReasonOutOfWindow
			s.finish(j, j.o, time.Since(j.started))
			return 0
		}
	}
	// Calls run under the Sender's context, not a retry deadline: a call
	// cut off half way may still be delivered, and would then be
	// reported failed and retried into a duplicate. Each call is bounded
	// by the Client's timeout.
	var err error
	if j.out.Template != nil {
		err = s.tryTemplate(s.ctx, j)
	} else {
		err = s.tryCustom(s.ctx, j)
	}
	j.tries++
	if wait, ok := s.retryAfter(j, err); ok {
		s.n.retried.Add(1)
		s.log.Debug("retrying", append(j.attrs(), "attempts", j.o.attempts, "backoff", wait, "error", err)...)
		s.showTyping(s.ctx, j)
		return wait
	}
	j.o.err, j.o.delivered = err, err == nil
	if j.typing && !j.o.delivered && s.ctx.Err() == nil {
		// A failed reply must not leave "typing…" hanging in the chat.
		if err := s.client.Typing(s.ctx, j.openid, false); err != nil {
			s.log.Debug("typing indicator not cancelled", append(j.attrs(), "error", err)...)
		}
	}
	var report *templateReport
	if j.o.delivered && j.out.Template != nil {
		rec := templateRecord{ID: j.out.ID, OpenID: j.openid, TemplateID: j.out.Template.TemplateID, Rule: j.out.Rule, InMsgID: j.out.InMsgID}
		if status, arrived := s.status.recordTemplate(j.o.msgID, rec); arrived {
			report = &templateReport{rec, status}
		}
	}
	s.finish(j, j.o, time.Since(j.started))
	if report != nil {
		s.templateFinished(report.rec, strconv.FormatInt(j.o.msgID, 10), report.status)
	}
	return 0
}

// retryAfter returns the wait before the next try of j after err, and
// whether there is one: not after a success or a final answer, not
// after MaxAttempts tries, not during a forced shutdown, and not when
// the wait would end after MaxRetryTime.
func (s *Sender) retryAfter(j *job, err error) (time.Duration, bool) {
	if err == nil || !Retryable(err) || j.tries >= s.o.MaxAttempts || s.ctx.Err() != nil {
		return 0, false
	}
	wait := backoff(s.o.BaseBackoff, s.o.MaxBackoff, j.tries)
	if time.Now().Add(wait).After(j.started.Add(s.o.MaxRetryTime)) {
		return 0, false
	}
	return wait, true
}

// outOfWindow reports whether j is a customer-service message to a user
// known to be outside the 48-hour window.
func (s *Sender) outOfWindow(j *job) bool {
	if s.o.Window == nil || j.out.Custom == nil {
		return false
	}
	open, known := s.o.Window.Open(j.openid, time.Now())
	return known && !open
}

// tryCustom makes one try at a customer-service message: uploads its
// files unless done by an earlier try, sends, and on 40007 uploads them
// once more and sends again.
func (s *Sender) tryCustom(ctx context.Context, j *job) error {
	if j.ready == nil {
		if err := s.resolve(ctx, j); err != nil {
			return err
		}
	}
	err := s.sendCustom(ctx, j)
	var ae *APIError
	if errors.As(err, &ae) && ae.Code == ErrCodeInvalidMediaID && len(j.refs) > 0 && !j.reuploaded {
		// The media expired or was never valid for WeChat: the cached
		// media_id is useless, a fresh upload may not be.
		j.reuploaded = true
		s.log.Info("media_id rejected; uploading the file again", j.attrs()...)
		for _, r := range j.refs {
			s.client.EvictMedia(r.mediaType, r.path)
		}
		if err := s.resolve(ctx, j); err != nil {
			return err
		}
		err = s.sendCustom(ctx, j)
	}
	return err
}

// resolve fills in j.ready: the message as sent, with kf_account added
// and files replaced by their media_ids.
func (s *Sender) resolve(ctx context.Context, j *job) error {
	msg := j.out.Custom
	if s.o.KfAccount != "" && msg.CustomService == nil {
		cp := *msg
		cp.CustomService = &CustomService{KfAccount: s.o.KfAccount}
		msg = &cp
	}
	m, refs, err := s.client.resolveMedia(ctx, msg, func() { s.showTyping(ctx, j) })
	j.ready, j.refs = m, refs
	return err
}

func (s *Sender) sendCustom(ctx context.Context, j *job) error {
	j.o.attempts++
	j.o.lastCall = time.Now()
	err := s.client.SendCustom(ctx, j.ready)
	s.noteCutOff(j, err)
	return err
}

// noteCutOff gives j the reason ReasonShutdownInFlight when err says
// Shutdown cancelled its send call on the wire (a *url.Error), rather
// than while it waited for a token.
func (s *Sender) noteCutOff(j *job, err error) {
	var ue *url.Error
	if s.ctx.Err() != nil && errors.Is(err, context.Canceled) && errors.As(err, &ue) {
		j.o.reason = ReasonShutdownInFlight
	}
}

// tryTemplate makes one try at a template message. It carries the
// Outgoing ID as client_msg_id, with which WeChat drops a repeat to the
// same user, so a retry after a timeout cannot send it twice.
func (s *Sender) tryTemplate(ctx context.Context, j *job) error {
	tm := *j.out.Template
	if tm.ClientMsgID == "" {
		tm.ClientMsgID = j.out.ID
	}
	j.o.attempts++
	id, err := s.client.SendTemplate(ctx, &tm)
	j.o.msgID = id
	s.noteCutOff(j, err)
	return err
}

// showTyping shows the typing indicator once per message when the option
// is on. It is best effort: a message never fails because of it.
func (s *Sender) showTyping(ctx context.Context, j *job) {
	if !s.o.Typing || j.out.Custom == nil || j.typing {
		return
	}
	j.typing = true
	if err := s.client.Typing(ctx, j.openid, true); err != nil {
		s.log.Debug("typing indicator not shown", append(j.attrs(), "error", err)...)
	}
}

// finish records a message's outcome: Status, counters, one log line and
// OnResult.
func (s *Sender) finish(j *job, o outcome, took time.Duration) {
	if !o.delivered && o.reason == "" {
		o.reason, o.errCode = describe(o.err, s.ctx.Err() != nil)
	}
	if o.errCode == ErrCodeOutOfWindow && s.o.Window != nil {
		s.o.Window.CloseAsOf(j.openid, o.lastCall)
	}
	state := StateDelivered
	if !o.delivered {
		state = StateFailed
	}
	s.status.update(j.out.ID, func(st *Status) {
		st.State, st.Reason, st.ErrCode, st.Attempts, st.MsgID = state, o.reason, o.errCode, o.attempts, o.msgID
		st.OpenID, st.Rule, st.MsgType = j.openid, j.out.Rule, j.msgtype
	})
	attrs := append(j.attrs(), "attempts", o.attempts, "duration_ms", took.Milliseconds())
	if o.msgID != 0 {
		attrs = append(attrs, "template_msgid", o.msgID)
	}
	if o.delivered {
		s.n.delivered.Add(1)
		s.log.Info("message delivered", attrs...)
	} else {
		s.n.failed.Add(1)
		if o.reason == ReasonOutOfWindow {
			s.n.outOfWindow.Add(1)
		}
		attrs = append(attrs, "errcode", o.errCode, "reason", o.reason)
		if o.err != nil {
			attrs = append(attrs, "error", o.err.Error())
		}
		s.log.Warn("message failed", attrs...)
	}
	if s.o.OnResult != nil {
		s.o.OnResult(Result{
			Outgoing: j.out, Delivered: o.delivered, Reason: o.reason, ErrCode: o.errCode,
			Attempts: o.attempts, MsgID: o.msgID, Err: o.err, Duration: took,
		})
	}
}

// attrs are the log attributes that say which message a line is about.
func (j *job) attrs() []any {
	return []any{"id", j.out.ID, "openid", j.openid, "msg_id", j.out.InMsgID, "rule", j.out.Rule, "msgtype", j.msgtype}
}
