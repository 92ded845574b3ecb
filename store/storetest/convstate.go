package storetest

import (
	"time"

	"github.com/wxreply/wxreply/store"
)

// Conversation states: a batch sets or clears a user's state with the
// rest of what it records, and State reads it by the time passed in.

const stateTTL = 10 * time.Minute

func (f *fx) wantState(what, openid string, now time.Time, want string) {
	f.t.Helper()
	name, ok, err := f.s.State(f.ctx, openid, now)
	if err != nil {
		f.t.Fatalf("%s: State(%s): %v", what, openid, err)
	}
	if want == "" && ok {
		f.t.Errorf("%s: State(%s) at %s = %q, want none", what, openid, off(now), name)
	}
	if want != "" && (!ok || name != want) {
		f.t.Errorf("%s: State(%s) at %s = %q, %v, want %q", what, openid, off(now), name, ok, want)
	}
}

func setState(openid, name string) *store.UserState {
	return &store.UserState{OpenID: openid, Name: name, TTL: stateTTL}
}

func testConversationState(f *fx) {
	f.wantState("never set", "u1", base, "")

	// Set alone is a batch worth recording.
	f.acceptBatch(&store.Batch{Now: base, SetState: setState("u1", "awaiting_order")})
	f.wantState("after set", "u1", base, "awaiting_order")
	f.wantState("another user", "u2", base, "")
	f.wantState("just before it expires", "u1", at(stateTTL-time.Millisecond), "awaiting_order")
	f.wantState("when it expires", "u1", at(stateTTL), "")

	// Set with the rest of a callback; a second set replaces the first
	// and its lifetime.
	f.acceptBatch(&store.Batch{Now: at(time.Minute), Dedupe: "m1", DedupeTTL: dedupeTTL, Touch: "u1",
		SetState: setState("u1", "awaiting_city"), Items: []store.NewItem{item("a", "u1")}})
	f.wantState("after a second set", "u1", at(time.Minute), "awaiting_city")
	f.wantState("the second set's lifetime", "u1", at(time.Minute+stateTTL-time.Millisecond), "awaiting_city")
	f.pending(1)

	// Per user.
	f.acceptBatch(&store.Batch{Now: at(2 * time.Minute), SetState: setState("u2", "awaiting_order")})
	f.wantState("u2 set", "u2", at(2*time.Minute), "awaiting_order")
	f.wantState("u1 unchanged by u2's", "u1", at(2*time.Minute), "awaiting_city")

	// A duplicate (WeChat's retry) neither sets nor clears.
	dup := f.acceptBatch(&store.Batch{Now: at(time.Minute + dedupeTTL/2), Dedupe: "m1", DedupeTTL: dedupeTTL,
		ClearState: "u1", SetState: setState("u1", "other"), Items: []store.NewItem{item("b", "u1")}})
	if !dup.Duplicate {
		f.t.Fatalf("retry = %+v, want duplicate", dup)
	}
	f.wantState("after a duplicate", "u1", at(time.Minute+dedupeTTL/2), "awaiting_city")
	f.noStatus("b")

	// Clear.
	f.acceptBatch(&store.Batch{Now: at(4 * time.Minute), ClearState: "u1"})
	f.wantState("after clear", "u1", at(4*time.Minute), "")
	f.wantState("u2 unchanged by u1's clear", "u2", at(4*time.Minute), "awaiting_order")

	// Clear and set in one batch: the set stands.
	f.acceptBatch(&store.Batch{Now: at(5 * time.Minute), ClearState: "u2", SetState: setState("u2", "awaiting_city")})
	f.wantState("after clear and set", "u2", at(5*time.Minute), "awaiting_city")

	// An expired state does not come back, and a new set after it counts
	// from its own batch.
	f.wantState("expired", "u2", at(5*time.Minute+stateTTL), "")
	f.acceptBatch(&store.Batch{Now: at(time.Hour), SetState: setState("u2", "awaiting_order")})
	f.wantState("set after expiry", "u2", at(time.Hour), "awaiting_order")
}
