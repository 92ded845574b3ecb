// Package storetest is the conformance suite of store.Store: every
// implementation (SQLite on a directory and in memory, and later Redis)
// runs Run and must pass it.
//
// The suite never reads a clock to decide anything: every time it passes
// is a fixed base plus an offset, so leases, retries, marks and pauses run
// out exactly when a test says so.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/wxreply/wxreply/store"
)

// Run runs the suite. open must return a new, empty store each time it is
// called; Run closes it when the subtest ends (implementations must
// accept a second Close, should open register one too).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(f *fx)
	}{
		{"AcceptClaim", testAcceptClaim},
		{"LaneOneAtATimeInOrder", testLaneOrder},
		{"UsersInParallel", testUsersInParallel},
		{"BatchAtomicAcrossUsers", testBatchAcrossUsers},
		{"LeaseRunsOut", testLeaseRunsOut},
		{"StaleClaimAfterLaneEmptied", testStaleClaimAfterLaneEmptied},
		{"Retry", testRetry},
		{"Release", testRelease},
		{"Extend", testExtend},
		{"Pause", testPause},
		{"Dedupe", testDedupe},
		{"DedupeAnswerOnly", testDedupeAnswerOnly},
		{"Idempotency", testIdempotency},
		{"IdempotencyConflictRecordsNothing", testIdempotencyConflictRecordsNothing},
		{"IdempotencyIDsAsGiven", testIdempotencyIDsAsGiven},
		{"ConcurrentDuplicates", testConcurrentDuplicates},
		{"QueryOneBody", testQueryOneBody},
		{"Window", testWindow},
		{"ClaimCarriesWindow", testClaimCarriesWindow},
		{"Status", testStatus},
		{"Templates", testTemplates},
		{"TemplateEarly", testTemplateEarly},
		{"Pending", testPending},
		{"Media", testMedia},
		{"ConversationState", testConversationState},
		{"Closed", testClosed},
		{"Concurrent", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(&fx{t: t, s: s, ctx: t.Context()})
		})
	}
}

// base is the suite's "now". It lies in the past on purpose: a store that
// reads its own clock instead of the times passed in gets it wrong.
var base = time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)

// at is base plus d.
func at(d time.Duration) time.Time { return base.Add(d) }

const lease = 30 * time.Second

// fx is one subtest's store with helpers that fail the test on an
// unexpected error.
type fx struct {
	t   *testing.T
	s   store.Store
	ctx context.Context
}

// item is a NewItem for openid with every field set, so that a store that
// drops one is caught.
func item(id, openid string) store.NewItem {
	return store.NewItem{
		ID: id, OpenID: openid, MsgType: "text", Rule: "rule-" + id,
		InMsgID: "in-" + id, Payload: []byte(`{"id":"` + id + `"}`),
	}
}

// accept records items in one batch at now.
func (f *fx) accept(now time.Time, items ...store.NewItem) store.Accepted {
	f.t.Helper()
	return f.acceptBatch(&store.Batch{Now: now, Items: items})
}

func (f *fx) acceptBatch(b *store.Batch) store.Accepted {
	f.t.Helper()
	a, err := f.s.Accept(f.ctx, b)
	if err != nil {
		f.t.Fatalf("Accept: %v", err)
	}
	return a
}

func (f *fx) claim(now time.Time, max int) ([]store.Claim, time.Time) {
	f.t.Helper()
	cs, next, err := f.s.Claim(f.ctx, now, max, lease)
	if err != nil {
		f.t.Fatalf("Claim at %s: %v", off(now), err)
	}
	return cs, next
}

// claimOne claims at now and wants exactly the item id.
func (f *fx) claimOne(now time.Time, id string) store.Claim {
	f.t.Helper()
	cs, _ := f.claim(now, 10)
	if len(cs) != 1 || cs[0].Item.ID != id {
		f.t.Fatalf("Claim at %s = %v, want [%s]", off(now), ids(cs), id)
	}
	return cs[0]
}

// claimNone claims at now, wants nothing and returns next.
func (f *fx) claimNone(now time.Time) time.Time {
	f.t.Helper()
	cs, next := f.claim(now, 10)
	if len(cs) != 0 {
		f.t.Fatalf("Claim at %s = %v, want nothing", off(now), ids(cs))
	}
	return next
}

func (f *fx) complete(c store.Claim, now time.Time) store.Status {
	f.t.Helper()
	st, err := f.s.Complete(f.ctx, c, store.Final{Now: now, Delivered: true, Attempts: c.Item.Attempts + 1})
	if err != nil {
		f.t.Fatalf("Complete %s: %v", c.Item.ID, err)
	}
	return st
}

func (f *fx) status(id string) (store.Status, bool) {
	f.t.Helper()
	st, ok, err := f.s.Status(f.ctx, id)
	if err != nil {
		f.t.Fatalf("Status %s: %v", id, err)
	}
	return st, ok
}

// mustStatus wants id known.
func (f *fx) mustStatus(id string) store.Status {
	f.t.Helper()
	st, ok := f.status(id)
	if !ok {
		f.t.Fatalf("Status %s: not found", id)
	}
	return st
}

func (f *fx) noStatus(id string) {
	f.t.Helper()
	if st, ok := f.status(id); ok {
		f.t.Fatalf("Status %s = %+v, want not found", id, st)
	}
}

func (f *fx) pending(want int) {
	f.t.Helper()
	n, err := f.s.Pending(f.ctx)
	if err != nil {
		f.t.Fatalf("Pending: %v", err)
	}
	if n != want {
		f.t.Fatalf("Pending = %d, want %d", n, want)
	}
}

func (f *fx) window(openid string) store.Window {
	f.t.Helper()
	w, err := f.s.Window(f.ctx, openid)
	if err != nil {
		f.t.Fatalf("Window %s: %v", openid, err)
	}
	return w
}

// leaseLost wants err to be ErrLeaseLost.
func (f *fx) leaseLost(what string, err error) {
	f.t.Helper()
	if !errors.Is(err, store.ErrLeaseLost) {
		f.t.Fatalf("%s with a stale claim: %v, want ErrLeaseLost", what, err)
	}
}

// staleCallsFail runs Complete, Retry and Release with the stale claim c
// and wants each to lose its lease.
func (f *fx) staleCallsFail(c store.Claim, now time.Time) {
	f.t.Helper()
	_, err := f.s.Complete(f.ctx, c, store.Final{Now: now, Delivered: false, Reason: "stale", Attempts: 99, MsgID: 777})
	f.leaseLost("Complete", err)
	err = f.s.Retry(f.ctx, c, store.Retry{Now: now, At: now.Add(time.Hour), Attempts: 99, LastError: "stale"})
	f.leaseLost("Retry", err)
	f.leaseLost("Release", f.s.Release(f.ctx, c, now))
}

func sameTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s = %s, want %s", what, show(got), show(want))
	}
}

// checkItem compares a claimed item with what was accepted.
func checkItem(t *testing.T, got store.Item, want store.NewItem, created time.Time) {
	t.Helper()
	if got.ID != want.ID || got.OpenID != want.OpenID || got.MsgType != want.MsgType ||
		got.Rule != want.Rule || got.InMsgID != want.InMsgID || !bytes.Equal(got.Payload, want.Payload) {
		t.Errorf("claimed item = %+v, want %+v", got.NewItem, want)
	}
	sameTime(t, "Item.Created", got.Created, created)
}

func ids(cs []store.Claim) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Item.ID
	}
	return out
}

// sortedIDs are the claims' item IDs, sorted: Claim promises no order
// between lanes.
func sortedIDs(cs []store.Claim) []string {
	out := ids(cs)
	slices.Sort(out)
	return out
}

// off shows t as an offset from base.
func off(t time.Time) string {
	if t.IsZero() {
		return "zero"
	}
	return "base" + fmt.Sprintf("%+v", t.Sub(base))
}

func show(t time.Time) string {
	if t.IsZero() {
		return "zero"
	}
	return off(t)
}
