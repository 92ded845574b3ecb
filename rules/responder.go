package rules

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// Sender is where a Responder hands the replies it decided on;
// *wechat.Sender is the real one.
type Sender interface {
	Enqueue(items ...wechat.Outgoing) ([]string, error)
	TemplateFinished(msgID, status string)
}

// Window records the interactions that open a user's 48-hour
// customer-service window; *wechat.Window is the real one.
type Window interface {
	Touch(openid string, at time.Time)
}

// Decider decides on one message; *Engine (the hot-reloaded rules) and
// *Set both are one.
type Decider interface {
	Decide(m *wechat.Message) Decision
}

// Responder is the callback's brain: for each inbound message it records
// the user's window, completes template delivery reports, decides with the
// rules and queues the replies. It satisfies handlers.Responder. Nothing in
// it waits on the network, so the callback is answered at once.
type Responder struct {
	Rules  Decider      // required
	Sender Sender       // required
	Window Window       // nil: the window is not tracked
	Logger *slog.Logger // nil: slog.Default()
	Now    func() time.Time
}

// Respond decides on m, queues its replies and returns the passive reply,
// if a rule asked for one.
func (r *Responder) Respond(ctx context.Context, m *wechat.Message) *wechat.CustomMessage {
	if m == nil {
		return nil
	}
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	if r.Window != nil && m.OpensWindow() {
		r.Window.Touch(m.FromUserName, now())
	}
	if strings.EqualFold(m.Event, wechat.EventTemplateSendJobFinish) {
		r.Sender.TemplateFinished(m.MsgID, m.Status)
	}

	d := r.Rules.Decide(m)
	// The attributes are built only when the line is written: this runs
	// for every callback, inside WeChat's five seconds.
	if log.Enabled(ctx, slog.LevelInfo) {
		attrs := []any{"openid", m.FromUserName, "msg_id", msgIDOf(m), "msg_type", m.MsgType}
		if m.Event != "" {
			attrs = append(attrs, "event", m.Event)
		}
		if len(d.Rules) == 0 {
			log.InfoContext(ctx, "no rule matched", attrs...)
		} else {
			log.InfoContext(ctx, "rules matched", append(attrs, "rule", strings.Join(d.Rules, ","),
				"replies", len(d.Replies), "passive", d.Passive != nil)...)
		}
	}
	if len(d.Rules) == 0 {
		return d.Passive
	}
	if len(d.Replies) == 0 {
		return d.Passive
	}
	if _, err := r.Sender.Enqueue(d.Replies...); err != nil {
		// Accepted from WeChat but not queued: say so for every reply, so
		// none is lost without a trace.
		reason := "not queued: " + err.Error()
		if errors.Is(err, wechat.ErrQueueFull) {
			reason = "queue full"
		}
		for _, o := range d.Replies {
			log.ErrorContext(ctx, "reply failed", "openid", m.FromUserName, "msg_id", o.InMsgID,
				"rule", o.Rule, "state", wechat.StateFailed, "reason", reason)
		}
	}
	return d.Passive
}
