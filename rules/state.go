package rules

import (
	"slices"
	"strings"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// Conversation states: a rule may give the sender a named state for a
// while (set_state) or end it (clear_state), and `match: state:` holds
// while the sender's state is that name, so that a dialog can take the
// next message as the answer to a question. The state is read from the
// store before the rules decide and written with the callback's replies,
// so the rule that sets it and the message that tests it are different
// callbacks.
//
// When the sender has a state, the rules that test it are tried first (in
// file order among them), then the others in file order: a rule waiting
// for an answer wins over a keyword rule earlier in the file that the
// answer would also match.

// setStateSpec is a rule's set_state.
type setStateSpec struct {
	Name string `yaml:"name"`
	For  string `yaml:"for"` // a Go duration; DefaultStateFor when absent
}

// DefaultStateFor is how long a state set without `for` lasts.
const DefaultStateFor = 10 * time.Minute

// maxStateFor bounds `for`: a dialog's step, not a user profile.
const maxStateFor = 30 * 24 * time.Hour

// ruleState is what a rule does to the sender's state.
type ruleState struct {
	set   string        // the name to set, "" for none
	ttl   time.Duration // how long it lasts
	clear bool
}

// compileState compiles spec's set_state and clear_state into r.
func (c *compiler) compileState(path string, spec *ruleSpec, r *rule) {
	if st := spec.SetState; st != nil && !c.broken(path+".set_state") {
		at := path + ".set_state"
		switch name := strings.TrimSpace(st.Name); {
		case c.corruptAt(at + ".name"):
		case name == "":
			c.add(c.node(at), at, false, "needs a name: the state that `match: state:` tests")
		default:
			r.state.set = name
		}
		r.state.ttl = DefaultStateFor
		if f := strings.TrimSpace(st.For); f != "" && !c.corruptAt(at+".for") {
			d, err := time.ParseDuration(f)
			switch {
			case err != nil:
				c.add(c.node(at+".for"), at+".for", false, "%q is not a duration such as 10m or 1h30m", st.For)
			case d <= 0 || d > maxStateFor:
				c.add(c.node(at+".for"), at+".for", false, "want a duration above 0 and at most 720h (30 days), got %s", f)
			default:
				r.state.ttl = d
			}
		}
		if spec.ClearState {
			c.add(c.node(path+".clear_state"), path+".clear_state", false,
				"a rule with set_state replaces the state already: give set_state or clear_state, not both")
		}
	}
	r.state.clear = spec.ClearState && spec.SetState == nil
}

// warnStates warns of a state that rules test but no rule sets (those
// rules never match), and of one set but never tested.
func (c *compiler) warnStates(specs []ruleSpec) {
	set, tested := map[string]bool{}, map[string]bool{}
	for i := range specs {
		if st := specs[i].SetState; st != nil {
			set[strings.TrimSpace(st.Name)] = true
		}
		if m := specs[i].Match; m != nil {
			for _, v := range m.State {
				tested[strings.TrimSpace(v)] = true
			}
		}
	}
	for i := range specs {
		path := indexPath("rules", i)
		if m := specs[i].Match; m != nil && !c.broken(path+".match.state") {
			for j, v := range m.State {
				if name := strings.TrimSpace(v); name != "" && !set[name] {
					at := c.elem(path+".match.state", j)
					c.warn(c.node(at), at, "no rule sets the state %q (set_state: {name: %s}): this rule never matches", name, name)
				}
			}
		}
		if st := specs[i].SetState; st != nil && !c.broken(path+".set_state") {
			if name := strings.TrimSpace(st.Name); name != "" && !tested[name] {
				at := path + ".set_state.name"
				c.warn(c.node(at), at, "no rule tests the state %q (match: {state: %s}): setting it changes nothing", name, name)
			}
		}
	}
}

// UsesState reports whether any rule tests a conversation state: only
// then is the sender's state worth reading before deciding.
func (s *Set) UsesState() bool { return s.idx.fields[fieldState] != nil }

// DecideWithState is Decide for a sender whose conversation state state
// reads ("" for none). state is called at most once, and only when the
// rules test a state, so that a file without states costs no read; its
// error is returned, with nothing decided.
//
// Nor is it read for a message that no state-testing rule could match
// whatever the state (a "hi" where the state rules want digits): the
// sender's state cannot change what is decided then, and most callbacks
// are spared the store read.
func (s *Set) DecideWithState(m *wechat.Message, state func() (string, error)) (Decision, error) {
	if m == nil || !s.UsesState() || !s.stateMayMatter(m) {
		return s.Decide(m), nil
	}
	name, err := state()
	if err != nil {
		return Decision{}, err
	}
	return s.decide(m, name), nil
}

// stateMayMatter reports whether some rule that tests a state would match
// m, were the sender in that state.
func (s *Set) stateMayMatter(m *wechat.Message) bool {
	in := newInput(m)
	if s.timed {
		in.now = s.now().In(s.loc)
	}
	for name, rules := range s.idx.fields[fieldState] {
		in.set(fieldState, name)
		for _, n := range rules {
			if s.rules[n].cond.holds(&in, anchor{}) {
				return true
			}
		}
	}
	return false
}

// stateFirst moves to the front the rules among candidates that test a
// state (all of them hold for in's state, as the index found them under
// it), keeping file order within each part.
func (s *Set) stateFirst(in *input, candidates []int32) {
	if !in.has[fieldState] {
		return
	}
	slices.SortStableFunc(candidates, func(a, b int32) int {
		sa, sb := len(s.rules[a].cond.values[fieldState]) > 0, len(s.rules[b].cond.values[fieldState]) > 0
		switch {
		case sa == sb:
			return 0
		case sa:
			return -1
		}
		return 1
	})
}

// applyState records in d what r does to the sender's state: a later
// matched rule's set or clear overrides an earlier one's.
func applyState(d *Decision, r *rule) {
	switch {
	case r.state.set != "":
		d.SetState, d.StateFor, d.ClearState = r.state.set, r.state.ttl, false
	case r.state.clear:
		d.SetState, d.StateFor, d.ClearState = "", 0, true
	}
}
