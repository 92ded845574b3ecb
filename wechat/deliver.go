package wechat

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// outcome is how one message ended.
type outcome struct {
	delivered bool
	reason    string // set when known before describe: out of window, shutdown
	errCode   int
	attempts  int
	lastCall  time.Time // when the last send call was made
	msgID     int64
	report    *templateReport // a delivery report that overtook msgID's answer
	err       error
}

// templateReport is a TEMPLATESENDJOBFINISH event waiting to be logged.
type templateReport struct {
	rec    templateRecord
	status string
}

// deliver sends one message, retrying as its options allow, and records
// the result. No attempt starts later than MaxRetryTime after the first.
func (s *Sender) deliver(j *job) {
	start := time.Now()
	s.n.inFlight.Add(1)
	defer s.n.inFlight.Add(-1)
	s.status.update(j.out.ID, func(st *Status) { st.State = StateSending })

	// Attempts run under the Sender's context, not a retry deadline: a
	// call cut off half way may still be delivered, and would then be
	// reported failed and retried into a duplicate. The deadline only
	// decides whether another attempt starts; each call is bounded by the
	// Client's timeout.
	ctx := s.ctx
	deadline := start.Add(s.o.MaxRetryTime)
	var o outcome
	if j.out.Template != nil {
		o = s.sendTemplate(ctx, deadline, j)
	} else {
		o = s.sendCustom(ctx, deadline, j)
	}
	if j.typing && !o.delivered && s.ctx.Err() == nil {
		// A failed reply must not leave "typing…" hanging in the chat.
		if err := s.client.Typing(s.ctx, j.openid, false); err != nil {
			s.log.Debug("typing indicator not cancelled", append(j.attrs(), "error", err)...)
		}
	}
	s.finish(j, o, time.Since(start))
	if o.report != nil {
		s.templateFinished(o.report.rec, strconv.FormatInt(o.msgID, 10), o.report.status)
	}
}

// sendCustom delivers a customer-service message: checks the window,
// uploads its files, sends, and on 40007 uploads them once more.
func (s *Sender) sendCustom(ctx context.Context, deadline time.Time, j *job) outcome {
	var o outcome
	if w := s.o.Window; w != nil {
		if open, known := w.Open(j.openid, time.Now()); known && !open {
			o.reason = ReasonOutOfWindow
			return o
		}
	}
	msg := j.out.Custom
	if s.o.KfAccount != "" && msg.CustomService == nil {
		cp := *msg
		cp.CustomService = &CustomService{KfAccount: s.o.KfAccount}
		msg = &cp
	}
	var ready *CustomMessage
	var refs []mediaRef
	reuploaded := false
	resolve := func(ctx context.Context) error {
		m, r, err := s.client.resolveMedia(ctx, msg, func() { s.showTyping(ctx, j) })
		ready, refs = m, r
		return err
	}
	o.err = s.retry(ctx, deadline, j, func(ctx context.Context) error {
		if ready == nil {
			if err := resolve(ctx); err != nil {
				return err
			}
		}
		o.attempts++
		o.lastCall = time.Now()
		err := s.client.SendCustom(ctx, ready)
		var ae *APIError
		if errors.As(err, &ae) && ae.Code == ErrCodeInvalidMediaID && len(refs) > 0 && !reuploaded {
			// The media expired or was never valid for WeChat: the
			// cached media_id is useless, a fresh upload may not be.
			reuploaded = true
			s.log.Info("media_id rejected; uploading the file again", j.attrs()...)
			for _, r := range refs {
				s.client.EvictMedia(r.mediaType, r.path)
			}
			if err := resolve(ctx); err != nil {
				return err
			}
			o.attempts++
			o.lastCall = time.Now()
			err = s.client.SendCustom(ctx, ready)
		}
		return err
	})
	o.delivered = o.err == nil
	return o
}

// sendTemplate delivers a template message. It carries the Outgoing ID as
// client_msg_id, with which WeChat drops a repeat to the same user, so a
// retry after a timeout cannot send it twice.
func (s *Sender) sendTemplate(ctx context.Context, deadline time.Time, j *job) outcome {
	var o outcome
	tm := *j.out.Template
	if tm.ClientMsgID == "" {
		tm.ClientMsgID = j.out.ID
	}
	o.err = s.retry(ctx, deadline, j, func(ctx context.Context) error {
		o.attempts++
		id, err := s.client.SendTemplate(ctx, &tm)
		o.msgID = id
		return err
	})
	o.delivered = o.err == nil
	if o.delivered {
		rec := templateRecord{ID: j.out.ID, OpenID: j.openid, TemplateID: tm.TemplateID, Rule: j.out.Rule, InMsgID: j.out.InMsgID}
		if status, arrived := s.status.recordTemplate(o.msgID, rec); arrived {
			o.report = &templateReport{rec, status}
		}
	}
	return o
}

// retry calls try until it succeeds, its error is final, MaxAttempts
// tries were made, or the next one would start after deadline.
func (s *Sender) retry(ctx context.Context, deadline time.Time, j *job, try func(context.Context) error) error {
	for n := 1; ; n++ {
		err := try(ctx)
		if err == nil || !Retryable(err) || n >= s.o.MaxAttempts || ctx.Err() != nil {
			return err
		}
		wait := backoff(s.o.BaseBackoff, s.o.MaxBackoff, n)
		if time.Now().Add(wait).After(deadline) {
			return err
		}
		s.n.retried.Add(1)
		s.log.Debug("retrying", append(j.attrs(), "attempts", n, "backoff", wait, "error", err)...)
		s.showTyping(ctx, j)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done(): // shutdown's deadline passed
			t.Stop()
			return ctx.Err()
		}
	}
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
