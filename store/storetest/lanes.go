package storetest

import (
	"slices"
	"time"

	"github.com/wxreply/wxreply/store"
)

// Lanes: one user's items one at a time in acceptance order, users in
// parallel, leases fenced by their token, retries, releases and pauses.

func testAcceptClaim(f *fx) {
	a := item("a", "u1")
	got := f.accept(base, a)
	if got.Duplicate || !slices.Equal(got.IDs, []string{"a"}) {
		f.t.Fatalf("Accept = %+v, want IDs [a], not duplicate", got)
	}
	// An item is due from its acceptance on, not before.
	next := f.claimNone(at(-time.Millisecond))
	sameTime(f.t, "next before the item is due", next, base)

	c := f.claimOne(base, "a")
	checkItem(f.t, c.Item, a, base)
	if c.Item.Attempts != 0 || c.Item.LastError != "" {
		f.t.Errorf("new item: Attempts %d, LastError %q; want 0, \"\"", c.Item.Attempts, c.Item.LastError)
	}
	st := f.complete(c, at(time.Second))
	if st.ID != "a" || st.State != store.StateDelivered {
		f.t.Errorf("Complete = %+v, want a delivered", st)
	}
	if next := f.claimNone(at(time.Hour)); !next.IsZero() {
		f.t.Errorf("next with nothing waiting = %s, want zero", off(next))
	}
}

func testLaneOrder(f *fx) {
	f.accept(base, item("a", "u1"), item("b", "u1"), item("c", "u1"))
	f.accept(at(time.Millisecond), item("d", "u1"))
	var seq int64
	for i, id := range []string{"a", "b", "c", "d"} {
		now := at(time.Duration(i+1) * time.Second)
		c := f.claimOne(now, id)
		if c.Item.Seq <= seq {
			f.t.Errorf("%s: Seq %d after %d, want growing", id, c.Item.Seq, seq)
		}
		seq = c.Item.Seq
		// The lane is leased: the user's next item waits.
		f.claimNone(now)
		f.claimNone(now.Add(lease - time.Millisecond))
		f.complete(c, now)
	}
	f.claimNone(at(time.Minute))
	f.pending(0)
}

func testUsersInParallel(f *fx) {
	users := []string{"u1", "u2", "u3", "u4", "u5"}
	for _, u := range users {
		f.accept(base, item(u+"-1", u), item(u+"-2", u))
	}
	first, _ := f.claim(base, 3)
	if len(first) != 3 {
		f.t.Fatalf("Claim max 3 = %v, want 3 claims", ids(first))
	}
	rest, _ := f.claim(base, 10)
	all := append(slices.Clone(first), rest...)
	want := []string{"u1-1", "u2-1", "u3-1", "u4-1", "u5-1"}
	if got := sortedIDs(all); !slices.Equal(got, want) {
		f.t.Fatalf("two Claims = %v, want each user's first item once: %v", got, want)
	}
	f.claimNone(base)
	for _, c := range all {
		f.complete(c, at(time.Second))
	}
	second, _ := f.claim(at(time.Second), 10)
	want = []string{"u1-2", "u2-2", "u3-2", "u4-2", "u5-2"}
	if got := sortedIDs(second); !slices.Equal(got, want) {
		f.t.Fatalf("Claim after Completes = %v, want %v", got, want)
	}
}

func testBatchAcrossUsers(f *fx) {
	f.accept(base, item("a1", "ua"), item("b1", "ub"), item("a2", "ua"))
	f.pending(3)
	cs, _ := f.claim(base, 10)
	if got := sortedIDs(cs); !slices.Equal(got, []string{"a1", "b1"}) {
		f.t.Fatalf("Claim = %v, want [a1 b1]", got)
	}
	for _, c := range cs {
		f.complete(c, base)
	}
	f.claimOne(base, "a2")
}

func testLeaseRunsOut(f *fx) {
	f.accept(base, item("a", "u1"), item("b", "u1"))
	old := f.claimOne(base, "a")
	f.claimNone(at(lease - time.Millisecond))
	// The lease ran out: the same item again, with a higher token.
	now := at(lease + time.Millisecond)
	c := f.claimOne(now, "a")
	if c.Token <= old.Token {
		f.t.Fatalf("re-claim Token %d, want more than %d", c.Token, old.Token)
	}
	f.staleCallsFail(old, now)
	// Nothing changed: still queued, untried, and still leased to c.
	st := f.mustStatus("a")
	if st.State != store.StateQueued || st.Attempts != 0 || st.LastError != "" || st.MsgID != 0 {
		f.t.Errorf("after stale calls: %+v, want queued and untouched", st)
	}
	f.claimNone(now)
	f.pending(2)
	f.complete(c, now)
	f.claimOne(now, "b")
}

// testStaleClaimAfterLaneEmptied: a lane emptied and filled again must
// not give a stale claim's token a second life.
func testStaleClaimAfterLaneEmptied(f *fx) {
	f.accept(base, item("a", "u1"))
	stale := f.claimOne(base, "a")
	now := at(lease + time.Millisecond)
	c := f.claimOne(now, "a")
	done := f.complete(c, now)

	f.accept(now, item("b", "u1"))
	f.accept(now, item("x", "u2"))
	var b store.Claim
	for _, c := range f.claimAll(now) {
		if c.Item.ID == "b" {
			b = c
		}
	}
	if b.Item.ID != "b" {
		f.t.Fatal("b was not claimed")
	}
	later := now.Add(time.Second)
	f.staleCallsFail(stale, later)
	f.staleCallsFail(c, later)
	if st := f.mustStatus("a"); st.State != done.State || st.Reason != done.Reason || st.Attempts != done.Attempts ||
		st.MsgID != 0 || !st.Updated.Equal(done.Updated) {
		f.t.Errorf("a after stale calls = %+v, want as completed: %+v", st, done)
	}
	if st := f.mustStatus("b"); st.State != store.StateQueued || st.Attempts != 0 {
		f.t.Errorf("b after stale calls = %+v, want queued, untried", st)
	}
	// b is still leased: the stale calls did not free its lane.
	f.claimNone(later)
	f.complete(b, later)
}

// claimAll claims everything due at now.
func (f *fx) claimAll(now time.Time) []store.Claim {
	f.t.Helper()
	cs, _ := f.claim(now, 1000)
	return cs
}

func testRetry(f *fx) {
	f.accept(base, item("a", "u1"), item("b", "u1"))
	c := f.claimOne(base, "a")
	retryAt := at(time.Minute)
	if err := f.s.Retry(f.ctx, c, store.Retry{Now: at(time.Second), At: retryAt, Attempts: 1, LastError: "system busy"}); err != nil {
		f.t.Fatalf("Retry: %v", err)
	}
	st := f.mustStatus("a")
	if st.State != store.StateQueued || st.Attempts != 1 || st.LastError != "system busy" {
		f.t.Errorf("parked: %+v, want queued, 1 attempt, its error", st)
	}
	sameTime(f.t, "parked Status.NextAt", st.NextAt, retryAt)

	// The user's later item stays behind the parked one.
	next := f.claimNone(at(time.Second))
	sameTime(f.t, "next while parked", next, retryAt)

	// Another user due earlier comes first, and next says when.
	f.accept(at(20*time.Second), item("x", "u2"))
	next = f.claimNone(at(10 * time.Second))
	sameTime(f.t, "next with u2 due at +20s", next, at(20*time.Second))
	f.complete(f.claimOne(at(20*time.Second), "x"), at(20*time.Second))
	next = f.claimNone(retryAt.Add(-time.Millisecond))
	sameTime(f.t, "next before the retry", next, retryAt)

	c = f.claimOne(retryAt, "a")
	if c.Item.Attempts != 1 || c.Item.LastError != "system busy" {
		f.t.Errorf("re-claimed: Attempts %d, LastError %q; want 1, system busy", c.Item.Attempts, c.Item.LastError)
	}
	sameTime(f.t, "re-claimed Item.NextAt", c.Item.NextAt, retryAt)
	sameTime(f.t, "re-claimed Item.Created", c.Item.Created, base)
	if st := f.complete(c, retryAt); st.Attempts != 2 {
		f.t.Errorf("Complete Attempts = %d, want 2", st.Attempts)
	}
	f.claimOne(retryAt, "b")
}

func testRelease(f *fx) {
	f.accept(base, item("a", "u1"), item("b", "u1"))
	c := f.claimOne(base, "a")
	if err := f.s.Retry(f.ctx, c, store.Retry{Now: base, At: at(time.Second), Attempts: 2, LastError: "timeout"}); err != nil {
		f.t.Fatalf("Retry: %v", err)
	}
	c = f.claimOne(at(time.Second), "a")
	now := at(2 * time.Second)
	if err := f.s.Release(f.ctx, c, now); err != nil {
		f.t.Fatalf("Release: %v", err)
	}
	again := f.claimOne(now, "a")
	if again.Item.Attempts != 2 || again.Item.LastError != "timeout" {
		f.t.Errorf("released item: Attempts %d, LastError %q; want 2, timeout", again.Item.Attempts, again.Item.LastError)
	}
	if again.Token <= c.Token {
		f.t.Errorf("Token after release %d, want more than %d", again.Token, c.Token)
	}
	f.staleCallsFail(c, now)
	f.complete(again, now)
	f.claimOne(now, "b")
}

func testPause(f *fx) {
	f.accept(base, item("a", "u1"), item("b", "u1"))
	f.accept(base, item("x", "u2"))
	until := at(time.Hour)
	if err := f.s.Pause(f.ctx, until); err != nil {
		f.t.Fatalf("Pause: %v", err)
	}
	sameTime(f.t, "next while paused", f.claimNone(base), until)
	// An earlier pause does not shorten it.
	if err := f.s.Pause(f.ctx, at(30*time.Minute)); err != nil {
		f.t.Fatalf("Pause: %v", err)
	}
	sameTime(f.t, "next after an earlier Pause", f.claimNone(at(45*time.Minute)), until)
	sameTime(f.t, "next just before the end", f.claimNone(until.Add(-time.Millisecond)), until)

	cs := f.claimAll(until)
	if got := sortedIDs(cs); !slices.Equal(got, []string{"a", "x"}) {
		f.t.Fatalf("Claim at the pause's end = %v, want [a x]", got)
	}
	// A later pause wins, and stops claims again.
	later := at(2 * time.Hour)
	if err := f.s.Pause(f.ctx, later); err != nil {
		f.t.Fatalf("Pause: %v", err)
	}
	for _, c := range cs {
		f.complete(c, until)
	}
	sameTime(f.t, "next in the second pause", f.claimNone(until), later)
	f.claimOne(later, "b")
}

// testExtend: a renewed lease keeps the lane past its first end; a stale
// claim is reported lost and extends nothing.
func testExtend(f *fx) {
	f.accept(base, item("a", "u1"))
	f.accept(base, item("x", "u2"))
	var a, x store.Claim
	for _, c := range f.claimAll(base) {
		if c.Item.ID == "a" {
			a = c
		} else {
			x = c
		}
	}
	until := at(3 * lease)
	lost, err := f.s.Extend(f.ctx, []store.Claim{a, x}, until)
	if err != nil || len(lost) != 0 {
		f.t.Fatalf("Extend = %v, %v; want nothing lost", lost, err)
	}
	// Past the first lease, the lanes are still held.
	f.claimNone(at(lease + time.Millisecond))
	f.complete(x, at(lease+time.Millisecond))

	// a's lease runs out at until and is claimed again: a is stale now.
	again := f.claimOne(until, "a")
	lost, err = f.s.Extend(f.ctx, []store.Claim{a, again}, at(10*lease))
	if err != nil || !slices.Equal(lost, []string{"a"}) {
		f.t.Fatalf("Extend with a stale claim = %v, %v; want [a] lost", lost, err)
	}
	// The fresh claim was extended, the stale one did nothing to it.
	f.claimNone(at(5 * lease))
	f.staleCallsFail(a, at(5*lease))
	f.complete(again, at(5*lease))
	if lost, err := f.s.Extend(f.ctx, []store.Claim{again}, at(20*lease)); err != nil || !slices.Equal(lost, []string{"a"}) {
		f.t.Fatalf("Extend of a completed claim = %v, %v; want [a] lost", lost, err)
	}
	f.claimNone(at(6 * lease))
}
