package rules

import (
	"log/slog"
	"slices"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// Set is one loaded rules file: validated, indexed and immutable, so it is
// safe for concurrent use and swapped whole on reload.
type Set struct {
	path  string
	hash  string
	kf    string
	rules []*rule
	def   *rule // the default reply; nil when the file has none
	idx   index
	log   *slog.Logger
	intn  func(int) int
	// warnings are what `check` warns of: the file loads with them.
	warnings []Problem
	menu     *Menu // the custom menu; nil when the file has none
	// now and loc are the clock and the time zone of `time:` match keys;
	// timed says whether any rule has one.
	now   func() time.Time
	loc   *time.Location
	timed bool
}

// rule is one compiled rule.
type rule struct {
	name   string
	cont   bool
	cond   condition
	anchor anchor
	answer
	state ruleState // set_state, clear_state (state.go)
}

// answer is what a rule (or the default) replies.
type answer struct {
	random  bool // pick: random
	passive bool
	items   []*item
	// fallback is sent in place of a webhook item that fails.
	fallback []*item
}

// Len returns the number of rules, the default not counted.
func (s *Set) Len() int { return len(s.rules) }

// Hash names this version of the file: the first 12 hex digits of the
// SHA-256 of its content.
func (s *Set) Hash() string { return s.hash }

// Path returns the file the set was loaded from.
func (s *Set) Path() string { return s.path }

// KfAccount returns the customer-service account replies are sent as, ""
// for none.
func (s *Set) KfAccount() string { return s.kf }

// Warnings returns what is probably a mistake in the file though it loads
// (an event WeChat never sends, more replies than one interaction may
// have), in file order; `wxreply check` prints them.
func (s *Set) Warnings() []Problem { return slices.Clone(s.warnings) }

// HasDefault reports whether the file has a default reply.
func (s *Set) HasDefault() bool { return s.def != nil }

// Decision is what a Set decides for one inbound message.
type Decision struct {
	// Rules names the matched rules in file order; "default" when the
	// default answered. Empty when nothing matched.
	Rules []string
	// Passive is the first reply item of the first matched rule with
	// `passive: true`, to answer in the HTTP response; that item is not in
	// Replies. Its ToUser is the sender.
	Passive *wechat.CustomMessage
	// Replies are the messages to send through the API, in order. ID is
	// left for the sender to assign.
	Replies []wechat.Outgoing
	// SetState, when not "", is the conversation state to give the
	// sender for StateFor (set_state); ClearState ends the sender's state
	// (clear_state). Of the matched rules, the last that says either wins.
	SetState   string
	StateFor   time.Duration
	ClearState bool
	// Transfer, when set, is the passive answer instead of Passive: the
	// hand-over to human agents (transfer_customer_service).
	Transfer *wechat.TransferCustomerService
	// Webhooks are the webhook items to call, in order; each one's
	// answer (or its rule's fallback) goes into Replies at its At.
	Webhooks []*WebhookCall
}

// Decide matches m against the rules and renders the replies of every
// matched rule. A reply whose template fails is logged and left out.
func (s *Set) Decide(m *wechat.Message) Decision { return s.decide(m, "") }

// decide is Decide for a sender whose conversation state is state ("" for
// none; see DecideWithState).
func (s *Set) decide(m *wechat.Message, state string) Decision {
	var d Decision
	if m == nil {
		return d
	}
	in := newInput(m)
	in.set(fieldState, state)
	if s.timed {
		in.now = s.now().In(s.loc)
	}
	var buf [64]int32
	matched := s.match(&in, buf[:0])
	if len(matched) == 0 {
		// The default answers what a user said, never an event: a reply to
		// every unsubscribe or location report would be noise.
		if s.def != nil && !in.isEvent {
			d.Rules = []string{defaultName}
			s.answer(&d, s.def, &in, new(bool))
		}
		return d
	}
	d.Rules = make([]string, 0, len(matched))
	passiveTaken := false
	for _, n := range matched {
		r := s.rules[n]
		d.Rules = append(d.Rules, r.name)
		s.answer(&d, r, &in, &passiveTaken)
		applyState(&d, r)
	}
	return d
}

// match appends to dst the rules that match in, in file order: the first
// one and, while matched rules say continue, the next ones.
func (s *Set) match(in *input, dst []int32) []int32 {
	var buf [64]int32
	out := dst
	candidates := s.idx.candidates(in, buf[:0])
	s.stateFirst(in, candidates)
	for _, n := range candidates {
		r := s.rules[n]
		if !r.cond.holds(in, r.anchor) {
			continue
		}
		out = append(out, n)
		if !r.cont {
			break
		}
	}
	return out
}

// answer renders r's reply items into d.
func (s *Set) answer(d *Decision, r *rule, in *input, passiveTaken *bool) {
	items := r.items
	if len(items) == 0 {
		return
	}
	if r.random && len(items) > 1 {
		i := s.intn(len(items))
		items = items[i : i+1]
	}
	m := in.msg
	inMsgID := msgIDOf(m)
	data := &TemplateData{Message: m, Groups: r.cond.groups(in)}
	for k, it := range items {
		passiveSlot := k == 0 && r.passive && !*passiveTaken
		switch {
		case it.transfer != nil:
			if passiveSlot {
				*passiveTaken = true
				t := *it.transfer
				d.Transfer = &t
			} else {
				s.log.Error("hand-over skipped: an earlier rule already answered passively", "rule", r.name, "openid", m.FromUserName, "msg_id", inMsgID)
			}
			continue
		case it.webhook != nil:
			if passiveSlot {
				*passiveTaken = true
			}
			d.Webhooks = append(d.Webhooks, s.webhookCall(r, it.webhook, data, inMsgID, len(d.Replies), passiveSlot))
			continue
		}
		custom, tmpl, err := it.render(data)
		if err != nil {
			s.log.Error("reply skipped", "rule", r.name, "openid", m.FromUserName, "msg_id", inMsgID, "item", k, "err", err)
			if k == 0 && r.passive {
				*passiveTaken = true
			}
			continue
		}
		if custom != nil {
			custom.ToUser = m.FromUserName
		} else {
			tmpl.ToUser = m.FromUserName
		}
		if k == 0 && r.passive && !*passiveTaken {
			*passiveTaken = true
			d.Passive = custom
			continue
		}
		if custom != nil && s.kf != "" {
			custom.CustomService = &wechat.CustomService{KfAccount: s.kf}
		}
		d.Replies = append(d.Replies, wechat.Outgoing{Rule: r.name, InMsgID: inMsgID, Custom: custom, Template: tmpl})
	}
}

// msgIDOf is the id of m that replies and log lines carry, so that a log
// reader can follow one message: MsgId for user messages, MsgID for the
// job-finished events, which spell it so.
func msgIDOf(m *wechat.Message) string {
	if m.MsgId != "" {
		return m.MsgId
	}
	return m.MsgID
}
