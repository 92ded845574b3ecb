package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/rules"
	"github.com/wxreply/wxreply/wechat"
)

// stateOutbox is an Outbox that keeps one user's state and the requests.
type stateOutbox struct {
	state   string
	readErr error
	reads   int
	reqs    []delivery.Request
}

func (o *stateOutbox) Accept(_ context.Context, r delivery.Request) (delivery.Accepted, error) {
	o.reqs = append(o.reqs, r)
	return delivery.Accepted{}, nil
}

func (o *stateOutbox) TemplateFinished(context.Context, string, string) error { return nil }

func (o *stateOutbox) State(context.Context, string) (string, error) {
	o.reads++
	return o.state, o.readErr
}

func parseRules(t *testing.T, src string) *rules.Set {
	t.Helper()
	s, err := rules.Parse(filepath.Join(t.TempDir(), "rules.yaml"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const stateRules = `
rules:
  - name: ask
    match: {text: {equals: 订单}}
    set_state: {name: awaiting_order, for: 5m}
  - name: answer
    match: {state: awaiting_order}
    clear_state: true
    reply: [{text: "订单 {{.Content}}"}]
`

func textFrom(openid, content, id string) *wechat.Message {
	return &wechat.Message{FromUserName: openid, ToUserName: "gh_x", MsgType: "text", Content: content, MsgId: id}
}

// TestRespondCarriesState: the state is read once before the rules, and
// what the rule sets or clears goes into the callback's one request,
// with the retry mark even when nothing is sent.
func TestRespondCarriesState(t *testing.T) {
	out := &stateOutbox{}
	r := &Responder{Rules: parseRules(t, stateRules), Outbox: out, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now}
	if _, err := r.Respond(t.Context(), textFrom("u1", "订单", "1")); err != nil {
		t.Fatal(err)
	}
	req := out.reqs[0]
	if out.reads != 1 || req.SetState == nil || req.SetState.OpenID != "u1" || req.SetState.Name != "awaiting_order" ||
		req.SetState.TTL != 5*time.Minute || req.Dedupe == "" || len(req.Items) != 0 {
		t.Fatalf("after 订单: %d reads, request %+v", out.reads, req)
	}
	out.state = "awaiting_order"
	if _, err := r.Respond(t.Context(), textFrom("u1", "123456", "2")); err != nil {
		t.Fatal(err)
	}
	if req := out.reqs[1]; out.reads != 2 || req.ClearState != "u1" || req.SetState != nil || len(req.Items) != 1 {
		t.Fatalf("the answer: %d reads, request %+v", out.reads, req)
	}

	// A failed read records nothing: the callback is answered 503.
	out.readErr = errors.New("store down")
	if _, err := r.Respond(t.Context(), textFrom("u1", "123456", "3")); err == nil || len(out.reqs) != 2 {
		t.Fatalf("with the state unreadable: %v, %d requests", err, len(out.reqs))
	}

	// Rules without states read nothing.
	out2 := &stateOutbox{}
	r2 := &Responder{Rules: parseRules(t, "rules:\n  - name: a\n    match: {text: {equals: hi}}\n    reply: [{text: yo}]\n"),
		Outbox: out2, Logger: r.Logger, Now: time.Now}
	if _, err := r2.Respond(t.Context(), textFrom("u1", "hi", "4")); err != nil || out2.reads != 0 {
		t.Fatalf("rules without states: %v, %d reads", err, out2.reads)
	}
}
