package handlers

import (
	"context"
	"log/slog"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/wxreply/wxreply/wechat"
)

// Note is what a callback's one log line says beyond its HTTP request:
// the handler and the Responder fill it in as the callback goes, and the
// request log writes it once the callback is answered. A Responder finds
// it with NoteFrom.
type Note struct {
	// Rules are the rules that answered, nil for none.
	Rules []string
	// Replies is how many customer-service replies were recorded.
	Replies int
	// Passive is whether the answer was a passive reply (or the hand-over
	// to agents).
	Passive bool
	// State is the conversation state a rule set, "" for none; Cleared
	// reports a rule's clear_state.
	State   string
	Cleared bool
	// Outcome is what came of the callback, one of the Outcome values.
	Outcome string
}

// What came of a callback, the outcome of its log line.
const (
	OutcomeNoRule   = "no_rule"      // no rule answered; nothing recorded
	OutcomeAnswered = "answered"     // rules answered; their replies recorded
	OutcomeRetry    = "retry"        // a retry of a callback recorded before: its answer again, nothing recorded
	OutcomeWaited   = "retry_waited" // a retry of a callback being handled: waited for its answer
	OutcomeRefused  = "refused"      // answered 4xx: nothing recorded
	OutcomeFailed   = "not_recorded" // answered 5xx so that WeChat retries
)

// callbackState is a callback's Note and the facts the handler gathers
// for it, carried in its Echo context (for the request log) and its
// context (for the Responder).
type callbackState struct {
	note  Note
	msg   *wechat.Message // once parsed and, for encrypted bodies, decrypted
	query SignedQuery     // set (Key not "") for a plaintext body, bound to its signed query
	context.Context
}

// Value makes a callbackState the Responder's context, so that the
// callback costs one context value rather than one per fact.
func (s *callbackState) Value(key any) any {
	if key == (callbackKey{}) {
		return s
	}
	return s.Context.Value(key)
}

type callbackKey struct{}

// callbackEchoKey holds the callbackState in the Echo context.
const callbackEchoKey = "wxreply.callback"

// NoteFrom returns the Note of the callback ctx belongs to, nil outside
// a callback.
func NoteFrom(ctx context.Context) *Note {
	if s, ok := ctx.Value(callbackKey{}).(*callbackState); ok {
		return &s.note
	}
	return nil
}

// SignedQueryFrom returns the signed query of the callback ctx belongs
// to, when its body is bound to it (plaintext bodies only: msg_signature
// covers an encrypted one).
func SignedQueryFrom(ctx context.Context) (SignedQuery, bool) {
	if s, ok := ctx.Value(callbackKey{}).(*callbackState); ok && s.query.Key != "" {
		return s.query, true
	}
	return SignedQuery{}, false
}

// callbackOf is the callbackState the callback handler put in c, nil for
// other requests.
func callbackOf(c echo.Context) *callbackState {
	s, _ := c.Get(callbackEchoKey).(*callbackState)
	return s
}

// appendCallbackAttrs adds what s knows of its callback to a request's
// log attributes. The sender is named only once the signature held and
// the body parsed: anyone can write an openid, and a forged line under a
// real user's would pollute a grep of their conversation.
func appendCallbackAttrs(attrs []slog.Attr, s *callbackState, status int) []slog.Attr {
	n := &s.note
	outcome := n.Outcome
	switch {
	case status >= 500:
		outcome = OutcomeFailed
	case status >= 400:
		outcome = OutcomeRefused
	case outcome == "":
		outcome = OutcomeNoRule
	}
	if m := s.msg; m != nil {
		attrs = append(attrs, slog.String("openid", capped(m.FromUserName, 64)), slog.String("msg_type", capped(m.MsgType, 32)))
		if id := MsgIDOf(m); id != "" {
			attrs = append(attrs, slog.String("msg_id", capped(id, 96)))
		}
		if m.Event != "" {
			attrs = append(attrs, slog.String("event", capped(m.Event, 64)))
		}
	}
	if len(n.Rules) > 0 {
		attrs = append(attrs, slog.String("rule", strings.Join(n.Rules, ",")), slog.Int("replies", n.Replies))
		if n.Passive {
			attrs = append(attrs, slog.Bool("passive", true))
		}
	}
	switch {
	case n.State != "":
		attrs = append(attrs, slog.String("set_state", n.State))
	case n.Cleared:
		attrs = append(attrs, slog.Bool("clear_state", true))
	}
	return append(attrs, slog.String("outcome", outcome))
}

// MsgIDOf is what identifies m in the logs: its MsgId, the MsgID of the
// job-finished events, or for other events, which have neither, the
// dedupe key.
func MsgIDOf(m *wechat.Message) string {
	switch {
	case m.MsgId != "":
		return m.MsgId
	case m.MsgID != "":
		return m.MsgID
	}
	return m.DedupeKey()
}
