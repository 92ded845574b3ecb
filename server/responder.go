package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/handlers"
	"github.com/wxreply/wxreply/rules"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
)

// Decider decides on one message; *rules.Engine (the hot-reloaded rules)
// and *rules.Set both are one.
type Decider interface {
	Decide(m *wechat.Message) rules.Decision
}

// Outbox records what a callback causes; *delivery.Engine is the real one.
type Outbox interface {
	Accept(ctx context.Context, r delivery.Request) (delivery.Accepted, error)
	TemplateFinished(ctx context.Context, msgID, status string) error
}

// stateDecider is a Decider whose rules may test the sender's
// conversation state (match: state); *rules.Engine and *rules.Set are.
type stateDecider interface {
	DecideWithState(m *wechat.Message, state func() (string, error)) (rules.Decision, error)
}

// stateReader is an Outbox that reads a user's conversation state;
// *delivery.Engine is one.
type stateReader interface {
	State(ctx context.Context, openid string) (string, error)
}

// Responder is the callback's brain: for each inbound message it
// completes template delivery reports, decides with the rules and records
// the replies, the user's window and the retry-dedupe mark in one step of
// the store, before the callback is answered. Nothing in it waits on
// WeChat.
type Responder struct {
	Rules  Decider
	Outbox Outbox
	Logger *slog.Logger
	Now    func() time.Time

	// Matched, when set, counts the rules that answered each callback
	// recorded (a retry recognised is not counted again).
	Matched func(rules []string)

	// Webhooks calls the decision's webhook items (webhook.go); nil
	// sends their fallbacks.
	Webhooks *Webhooks

	// Decided, when set, is told which rules answered each message, as
	// soon as they are decided (Config.Decided).
	Decided func(openid string, rules []string)
}

var _ handlers.Responder = (*Responder)(nil)

// Respond decides on m, records its consequences and returns the passive
// reply's XML, or nil to answer success. A retry of a callback recorded
// before (after a restart, or on another instance) records nothing and
// gets the first copy's answer. An error means nothing was recorded: the
// callback must not be answered 200.
func (r *Responder) Respond(ctx context.Context, m *wechat.Message) ([]byte, error) {
	if m == nil {
		return nil, nil
	}
	if strings.EqualFold(m.Event, wechat.EventTemplateSendJobFinish) {
		if err := r.Outbox.TemplateFinished(ctx, m.MsgID, m.Status); err != nil {
			return nil, err
		}
	}
	d, err := r.decide(ctx, m)
	if err != nil {
		r.Logger.ErrorContext(ctx, "conversation state not read: answering 503 so that WeChat retries",
			"openid", m.FromUserName, "msg_id", handlers.MsgIDOf(m), "error", err)
		return nil, err
	}
	if len(d.Webhooks) > 0 {
		// Inside the callback, each within its item's timeout: the answer
		// may be the passive reply, and is recorded with the rest.
		wh := r.Webhooks
		if wh == nil {
			wh = &Webhooks{Logger: r.Logger}
		}
		wh.Resolve(ctx, &d)
	}
	// What was decided goes in the callback's one log line (the request
	// log writes it once the callback is answered), not in a line of its
	// own: this runs for every callback, inside WeChat's five seconds.
	note := handlers.NoteFrom(ctx)
	if note == nil {
		note = new(handlers.Note)
	}
	note.Rules, note.Replies, note.Passive = d.Rules, len(d.Replies), d.Passive != nil || d.Transfer != nil
	note.State, note.Cleared = d.SetState, d.ClearState && d.SetState == ""
	note.Outcome = handlers.OutcomeNoRule
	if len(d.Rules) > 0 {
		note.Outcome = handlers.OutcomeAnswered
	}
	if r.Decided != nil {
		r.Decided(m.FromUserName, d.Rules)
	}
	var answer []byte
	if d.Transfer != nil {
		// The hand-over to human agents (transfer_customer_service).
		answer = wechat.EncodeTransfer(m.FromUserName, m.ToUserName, r.Now().Unix(), *d.Transfer)
	}
	if d.Passive != nil {
		xml, err := wechat.EncodeReply(m.FromUserName, m.ToUserName, r.Now().Unix(), d.Passive)
		if err != nil {
			r.Logger.ErrorContext(ctx, "passive reply not sent", "openid", m.FromUserName, "msg_id", handlers.MsgIDOf(m),
				"rule", strings.Join(d.Rules, ","), "error", err)
		} else {
			answer = xml
		}
	}
	req := delivery.Request{Items: d.Replies, Answer: answer}
	if m.OpensWindow() {
		req.Touch = m.FromUserName
	}
	switch {
	case d.SetState != "":
		req.SetState = &store.UserState{OpenID: m.FromUserName, Name: d.SetState, TTL: d.StateFor}
	case d.ClearState:
		req.ClearState = m.FromUserName
	}
	if len(d.Replies) > 0 || answer != nil || req.SetState != nil || req.ClearState != "" {
		// Only a callback that caused something needs its retries
		// recognised: one that caused nothing causes nothing again.
		req.Dedupe = m.DedupeKey()
	}
	if q, ok := handlers.SignedQueryFrom(ctx); ok {
		req.Query, req.QueryBody, req.QueryUntil, req.QueryAt = q.Key, q.BodyHash, q.Until, q.At
	}
	acc, err := r.Outbox.Accept(ctx, req)
	if errors.Is(err, store.ErrQueryReused) {
		return nil, fmt.Errorf("%w: %w", handlers.ErrQueryReused, err)
	}
	if err != nil {
		r.Logger.ErrorContext(ctx, "callback not recorded: answering 503 so that WeChat retries",
			"openid", m.FromUserName, "msg_id", handlers.MsgIDOf(m), "rule", strings.Join(d.Rules, ","), "error", err)
		return nil, err
	}
	if acc.Duplicate {
		// The callback's line says so (outcome "retry").
		note.Outcome = handlers.OutcomeRetry
		return acc.Answer, nil
	}
	if r.Matched != nil {
		r.Matched(d.Rules)
	}
	return answer, nil
}

// decide decides on m, with the sender's conversation state when the
// rules test one: one read of the store, before the rules, and none at
// all for rules without states.
func (r *Responder) decide(ctx context.Context, m *wechat.Message) (rules.Decision, error) {
	sd, ok := r.Rules.(stateDecider)
	sr, ok2 := r.Outbox.(stateReader)
	if !ok || !ok2 || m.FromUserName == "" {
		return r.Rules.Decide(m), nil
	}
	return sd.DecideWithState(m, func() (string, error) { return sr.State(ctx, m.FromUserName) })
}
