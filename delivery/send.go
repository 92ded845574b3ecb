package delivery

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
)

// Reasons the engine gives besides WeChat's (wechat.Describe).
const (
	ReasonOutOfWindow = wechat.ReasonOutOfWindow
	ReasonUndecodable = "outbox item does not decode"
)

// try is one claimed item on its way: what it is and how far it got.
type try struct {
	c        store.Claim
	out      wechat.Outgoing
	openid   string
	msgtype  string
	attempts int
	lastCall time.Time
	msgID    int64
	typing   bool
	start    time.Time
	held     held // when its lease last began (renew)
}

// send makes one try at a claimed item and records what came of it: an
// end (delivered or failed), a retry parked in the store, or, during a
// shutdown, the item given back untried.
func (e *Engine) send(c store.Claim) {
	t := &try{c: c, openid: c.Item.OpenID, msgtype: c.Item.MsgType, attempts: c.Item.Attempts, start: e.now(),
		// an earlier try showed it (never for a template message)
		typing: e.o.Typing && c.Item.MsgType != MsgTypeTemplate && c.Item.Attempts > 0}
	t.held.set(t.start)
	e.flying.add(t)
	defer e.flying.remove(t)
	out, err := decodePayload(c.Item.Payload)
	if err != nil {
		e.fail(t, ReasonUndecodable, 0, err)
		return
	}
	out.ID, out.Rule, out.InMsgID = c.Item.ID, c.Item.Rule, c.Item.InMsgID
	t.out = out
	if e.stopped.Load() {
		e.record(t, "give back", func(ctx context.Context) error { return e.st.Release(ctx, c, e.now()) })
		return
	}
	if out.Custom != nil && c.Window.Known && !e.windowOpen(c.Window, t.start) {
		e.n.outOfWindow.Add(1)
		e.fail(t, ReasonOutOfWindow, 0, nil)
		return
	}
	if out.Template != nil {
		err = e.sendTemplate(t)
	} else {
		err = e.sendCustom(t)
	}
	now := e.now()
	var ae *wechat.APIError
	isAPI := errors.As(err, &ae)
	switch {
	case err == nil:
		e.deliver(t)
	case e.callCtx.Err() != nil && errors.Is(err, context.Canceled):
		// Cut off by Shutdown: WeChat may have it. Due again at once, so
		// that the next start (or another instance) finishes it.
		e.park(t, now, err)
	case isAPI && ae.Code == wechat.ErrCodeDailyQuota && ae.API != wechat.PathToken && ae.API != wechat.PathStableToken:
		e.quotaSpent(t, now, err)
	case wechat.Retryable(err):
		wait := backoff(e.o.BaseBackoff, e.o.MaxBackoff, t.attempts)
		var refused *wechat.TokenRefusedError
		if errors.As(err, &refused) {
			// WeChat refuses the account's tokens: calls are paused until
			// then, and trying sooner would only spin the outbox.
			wait = max(wait, refused.Until.Sub(now))
		}
		if now.Add(wait).After(c.Item.Created.Add(e.o.MaxAge)) {
			reason, code := wechat.Describe(err)
			e.fail(t, reason, code, err)
			return
		}
		e.n.retried.Add(1)
		e.showTyping(t)
		e.log.Debug("retrying", append(t.attrs(), "attempts", t.attempts, "backoff", wait.String(), "error", err.Error())...)
		e.park(t, now.Add(wait), err)
	default:
		reason, code := wechat.Describe(err)
		if code == wechat.ErrCodeOutOfWindow {
			e.n.outOfWindow.Add(1)
			asked := t.lastCall
			e.record(t, "record the closed window", func(ctx context.Context) error {
				return e.st.CloseWindow(ctx, t.openid, asked, e.now())
			})
		}
		e.fail(t, reason, code, err)
	}
}

// quotaSpent pauses the whole account after 45009 and parks the item
// until the pause ends, without counting the attempt: the quota, not the
// message, was at fault — unless the pause ends past the item's MaxAge.
// When the pause ends every due lane goes again; a 45009 among them
// pauses the account once more.
func (e *Engine) quotaSpent(t *try, now time.Time, err error) {
	until := now.Add(e.o.QuotaPause)
	e.n.quotaPauses.Add(1)
	e.log.Warn("WeChat's daily quota of customer-service messages is spent (45009): sending paused for the account; queued messages wait",
		append(t.attrs(), "paused_until", until.Format(time.RFC3339))...)
	e.record(t, "pause the account", func(ctx context.Context) error { return e.st.Pause(ctx, until) })
	t.attempts--
	if until.After(t.c.Item.Created.Add(e.o.MaxAge)) {
		// The pause outlasts the message's time: it would go out too
		// late to mean anything.
		reason, code := wechat.Describe(err)
		e.fail(t, reason, code, err)
		return
	}
	e.park(t, until, err)
}

// park leaves the item in the store, due again at at.
func (e *Engine) park(t *try, at time.Time, err error) {
	r := store.Retry{Now: e.now(), At: at, Attempts: t.attempts, LastError: errText(err)}
	e.record(t, "park for a retry", func(ctx context.Context) error { return e.st.Retry(ctx, t.c, r) })
}

func (e *Engine) deliver(t *try) {
	f := store.Final{Now: e.now(), Delivered: true, Attempts: t.attempts, MsgID: t.msgID}
	var st store.Status
	if !e.record(t, "record the delivery", func(ctx context.Context) (err error) {
		st, err = e.st.Complete(ctx, t.c, f)
		return err
	}) {
		return
	}
	e.n.delivered.Add(1)
	if e.log.Enabled(context.Background(), slog.LevelInfo) {
		attrs := append(t.attrs(), "attempts", t.attempts, "duration_ms", e.now().Sub(t.c.Item.Created).Milliseconds())
		if t.msgID != 0 {
			attrs = append(attrs, "template_msgid", t.msgID)
		}
		e.log.Info("message delivered", attrs...)
	}
	if st.TemplateStatus != "" {
		e.logTemplateFinished(st, st.TemplateStatus)
	}
	e.result(t, true, "", 0, nil)
}

func (e *Engine) fail(t *try, reason string, code int, err error) {
	f := store.Final{Now: e.now(), Reason: reason, ErrCode: code, Attempts: t.attempts, LastError: errText(err)}
	if !e.record(t, "record the failure", func(ctx context.Context) error {
		_, err := e.st.Complete(ctx, t.c, f)
		return err
	}) {
		return
	}
	e.n.failed(reason)
	if t.typing && e.callCtx.Err() == nil {
		// A failed reply must not leave "typing…" hanging in the chat.
		if err := e.api.Typing(e.callCtx, t.openid, false); err != nil {
			e.log.Debug("typing indicator not cancelled", append(t.attrs(), "error", err.Error())...)
		}
	}
	attrs := append(t.attrs(), "attempts", t.attempts, "errcode", code, "reason", reason)
	if err != nil {
		attrs = append(attrs, "error", err.Error())
	}
	e.log.Warn("message failed", attrs...)
	e.result(t, false, reason, code, err)
}

func (e *Engine) result(t *try, delivered bool, reason string, code int, err error) {
	if e.o.OnResult == nil {
		return
	}
	e.o.OnResult(Result{ID: t.c.Item.ID, OpenID: t.openid, Rule: t.c.Item.Rule, Delivered: delivered,
		Reason: reason, ErrCode: code, Attempts: t.attempts, MsgID: t.msgID, Err: err})
}

// record runs a store write about t until it succeeds, giving up when
// the lease is lost or nearly over (the item is then claimed again once
// the lease ends, and may be sent twice), or the store is closed. It
// reports whether the write went in.
func (e *Engine) record(t *try, what string, write func(ctx context.Context) error) bool {
	deadline := t.held.get().Add(e.o.Lease * 3 / 4)
	wait := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := write(ctx)
		cancel()
		switch {
		case err == nil:
			return true
		case errors.Is(err, store.ErrLeaseLost):
			e.log.Warn("outbox: lease lost before the outcome was recorded; another claim has the message",
				append(t.attrs(), "step", what)...)
			return false
		case errors.Is(err, store.ErrClosed) || !e.now().Add(wait).Before(deadline):
			e.log.Error("outbox: outcome not recorded; the message is tried again once its lease ends",
				append(t.attrs(), "step", what, "error", err.Error())...)
			return false
		}
		e.log.Warn("outbox: recording failed; trying again", append(t.attrs(), "step", what, "error", err.Error())...)
		timer := time.NewTimer(wait)
		<-timer.C
		wait = min(2*wait, 2*time.Second)
	}
}

// sendCustom makes one try at a customer-service message: uploads its
// files, sends, and on 40007 uploads them once more and sends again.
func (e *Engine) sendCustom(t *try) error {
	ctx := e.callCtx
	msg := t.out.Custom
	if e.o.KfAccount != "" && msg.CustomService == nil {
		cp := *msg
		cp.CustomService = &wechat.CustomService{KfAccount: e.o.KfAccount}
		msg = &cp
	}
	ready, refs, err := e.api.ResolveMedia(ctx, msg, func() { e.showTyping(t) })
	if err != nil {
		if !errors.Is(err, wechat.ErrMediaFile) {
			t.attempts++ // an upload was tried; a bad local file makes no call
		}
		return err
	}
	err = e.call(t, ready)
	var ae *wechat.APIError
	if errors.As(err, &ae) && ae.Code == wechat.ErrCodeInvalidMediaID && len(refs) > 0 {
		// The media expired or was never valid for WeChat: the cached
		// media_id is useless, a fresh upload may not be.
		e.log.Info("media_id rejected; uploading the file again", t.attrs()...)
		for _, r := range refs {
			e.api.EvictMedia(r.Type, r.Path)
		}
		if ready, _, err = e.api.ResolveMedia(ctx, msg, nil); err != nil {
			return err
		}
		err = e.call(t, ready)
	}
	return err
}

func (e *Engine) call(t *try, m *wechat.CustomMessage) error {
	t.attempts++
	t.lastCall = e.now()
	return e.api.SendCustom(e.callCtx, m)
}

// sendTemplate makes one try at a template message. It carries the item's
// ID as client_msg_id, with which WeChat drops a repeat to the same user,
// so a retry after a timeout or a crash cannot send it twice.
func (e *Engine) sendTemplate(t *try) error {
	tm := *t.out.Template
	if tm.ClientMsgID == "" {
		tm.ClientMsgID = t.out.ID
	}
	t.attempts++
	t.lastCall = e.now()
	id, err := e.api.SendTemplate(e.callCtx, &tm)
	t.msgID = id
	return err
}

// showTyping shows the typing indicator once per try when the option is
// on. It is best effort: a message never fails because of it.
func (e *Engine) showTyping(t *try) {
	if !e.o.Typing || t.out.Custom == nil || t.typing {
		return
	}
	t.typing = true
	if err := e.api.Typing(e.callCtx, t.openid, true); err != nil {
		e.log.Debug("typing indicator not shown", append(t.attrs(), "error", err.Error())...)
	}
}

// attrs are the log attributes that say which message a line is about.
func (t *try) attrs() []any {
	return []any{"id", t.c.Item.ID, "openid", t.openid, "msg_id", t.c.Item.InMsgID, "rule", t.c.Item.Rule, "msgtype", t.msgtype}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// backoff is the wait before retry number n (1 for the first retry):
// base doubled per retry, capped, with "equal jitter" (half fixed, half
// random) so that the retries after one outage spread out.
func backoff(base, maxWait time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	half := d / 2
	return half + rand.N(half+1)
}
