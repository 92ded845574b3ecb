package rules

import (
	"fmt"
	"slices"
	"strings"
)

// WeChat caps how many customer-service messages one interaction of a
// user allows, and refuses the rest with 45047: 5 for a user's message, 3
// for a follow, a QR scan or a menu click (as reported since mid-2023;
// WeChat's reference pages do not say). The cap check warns of a rule
// whose replies exceed the cap of an interaction it answers, counting the
// rules with continue that may answer the same message before it.
// Passive replies and template messages are not customer-service messages
// and do not count.

// trigger is an interaction that allows customer-service messages.
type trigger uint8

const (
	trigMessage         trigger = iota // a user's message
	trigFollow                         // subscribe
	trigScan                           // SCAN
	trigClick                          // CLICK
	trigScancodePush                   // scancode_push
	trigScancodeWaitMsg                // scancode_waitmsg
	numTriggers
)

var (
	// triggerEvent is the event of each trigger, lower-cased as the
	// compiled conditions hold it; "" for a user's message.
	triggerEvent = [numTriggers]string{"", "subscribe", "scan", "click", "scancode_push", "scancode_waitmsg"}
	triggerName  = [numTriggers]string{"a user's message", "a follow (subscribe)", "a QR scan (SCAN)",
		"a menu click (CLICK)", "a menu scan (scancode_push)", "a menu scan (scancode_waitmsg)"}
	triggerCap = [numTriggers]int{5, 3, 3, 3, 3, 3}
)

func capText(t trigger) string {
	if t == trigMessage {
		return fmt.Sprintf("WeChat allows %d for a user's message", triggerCap[t])
	}
	return fmt.Sprintf("WeChat allows %d for a follow, a QR scan or a menu click", triggerCap[t])
}

// capPairBudget bounds the comparisons of rules with continue against
// the rules after them; past it, only each rule's own replies are
// counted, so that a file of 10,000 rules with continue loads as fast as
// any.
const capPairBudget = 1_000_000

// capRule is what the cap check keeps of a rule with continue.
type capRule struct {
	name     string
	triggers uint16 // a bit per trigger the rule may answer
	cond     *condition
	answer   *answer
}

// capChecker follows the rules in file order.
type capChecker struct {
	chain  []capRule // the rules with continue so far
	budget int
}

// sends is how many customer-service messages a answers with; passiveFree
// says whether the passive reply is still to be taken (only the first
// matched rule with passive answers passively).
func sends(a *answer, passiveFree bool) (n int, takesPassive bool) {
	for _, it := range a.items {
		if it.custom != nil || it.webhook != nil { // a webhook answers at least one
			n++
		}
	}
	if a.random {
		n = min(n, 1) // the worst case: a customer-service item is picked
	}
	if a.passive && passiveFree && !a.random && len(a.items) > 0 && a.items[0].transfer != nil {
		return n, true // the hand-over is the passive answer
	}
	if a.passive && passiveFree && n > 0 {
		return n - 1, true
	}
	return n, false
}

// triggers returns the bits of the interactions a rule with the compiled
// condition cond may answer (text says it has a text key).
func triggers(cond *condition, text bool) uint16 {
	v := &cond.values
	msgTypes, events := v[fieldMsgType], v[fieldEvent]
	userOnly := text || len(v[fieldEquals]) > 0 || len(v[fieldMenuID]) > 0
	eventOnly := len(events) > 0 || len(v[fieldEventKey]) > 0 || len(v[fieldScene]) > 0 || len(v[fieldStatus]) > 0
	var bits uint16
	if !eventOnly && (msgTypes == nil || slices.ContainsFunc(msgTypes, func(t string) bool { return t != "event" })) {
		bits |= 1 << trigMessage
	}
	if userOnly || (msgTypes != nil && !slices.Contains(msgTypes, "event")) || len(v[fieldStatus]) > 0 {
		return bits // status: only the job-finished events report one
	}
	for t := trigFollow; t < numTriggers; t++ {
		if events != nil && !slices.Contains(events, triggerEvent[t]) {
			continue
		}
		if len(v[fieldScene]) > 0 && t != trigFollow && t != trigScan {
			continue
		}
		bits |= 1 << t
	}
	return bits
}

// mayOverlap reports whether one message may match both conditions, as
// far as their equality keys tell; the text keys are not compared.
func mayOverlap(a, b *condition) bool {
	for _, f := range []field{fieldEquals, fieldMenuID, fieldEventKey, fieldScene, fieldFrom, fieldStatus, fieldState} {
		x, y := a.values[f], b.values[f]
		if len(x) > 0 && len(y) > 0 && !slices.ContainsFunc(x, func(s string) bool { return slices.Contains(y, s) }) {
			return false
		}
	}
	return true
}

func mayOverlapAll(c *condition, others []*condition) bool {
	for _, o := range others {
		if !mayOverlap(c, o) {
			return false
		}
	}
	return true
}

// checkCaps warns when r, at path, with the rules with continue before it
// that may match the same message, sends more customer-service messages
// than an interaction r answers allows; bits are those interactions (see
// triggers). It then remembers r if it has continue. The default is
// checked alone: it answers only when no rule matched.
func (c *compiler) checkCaps(path string, r *rule, bits uint16) {
	cc := &c.caps
	chain := cc.chain
	if r.name == defaultName && path == defaultName {
		chain = nil
	}
	for t := range numTriggers {
		if bits&(1<<t) == 0 {
			continue
		}
		total, passiveFree := 0, true
		var before []string
		added := []*condition{&r.cond} // the rules that may all match one message
		for i := range chain {
			p := &chain[i]
			if p.triggers&(1<<t) == 0 {
				continue
			}
			if cc.budget -= len(added); cc.budget <= 0 {
				break // only r's own replies count from here on
			}
			if !mayOverlapAll(p.cond, added) {
				continue
			}
			n, took := sends(p.answer, passiveFree)
			passiveFree = passiveFree && !took
			if n > 0 {
				total += n
				before = append(before, p.name)
				added = append(added, p.cond)
			}
		}
		own, _ := sends(&r.answer, passiveFree)
		if own == 0 || total+own <= triggerCap[t] {
			continue
		}
		at := joinPath(path, "reply")
		if len(before) == 0 {
			c.warn(c.node(at), at, "%d customer-service messages answer %s; %s and refuses the rest with 45047: "+
				"split them over several interactions, or answer one passively", own, triggerName[t], capText(t))
		} else {
			c.warn(c.node(at), at, "with %s (continue: true) before this rule, %s may get %d customer-service messages; "+
				"%s and refuses the rest with 45047", strings.Join(before, ", "), triggerName[t], total+own, capText(t))
		}
		break // one warning a rule
	}
	if r.cont {
		cc.chain = append(cc.chain, capRule{name: r.name, triggers: bits, cond: &r.cond, answer: &r.answer})
	}
}
