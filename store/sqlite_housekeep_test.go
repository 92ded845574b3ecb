package store_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/wxreply/wxreply/store"
)

// TestFullStore: a store that cannot write says so in Healthy, keeps
// saying so while it still cannot, and says it can again once pruning
// freed room, without a restart.
func TestFullStore(t *testing.T) {
	t.Parallel()
	clk := newClock(base)
	s := openSQLite(t, store.SQLiteOptions{Dir: t.TempDir(), MaxPages: 64, Retention: time.Minute, Now: clk.Now})
	if err := s.Healthy(); err != nil {
		t.Fatalf("Healthy on a new store: %v", err)
	}
	big := bytes.Repeat([]byte("x"), 16<<10)
	accepted := 0
	var failure error
	for i := range 1000 {
		_, err := s.Accept(t.Context(), &store.Batch{Now: base, Items: []store.NewItem{item(fmt.Sprint(i), fmt.Sprint("u", i), big)}})
		if err != nil {
			failure = err
			break
		}
		accepted++
	}
	if failure == nil {
		t.Fatal("1000 Accepts of 16 KiB fit in 64 pages")
	}
	t.Logf("%d accepted, then: %v", accepted, failure)
	if accepted == 0 {
		t.Fatal("not even one Accept fitted")
	}
	if err := s.Healthy(); err == nil {
		t.Fatal("Healthy is nil after an Accept failed for want of room")
	}

	// Still full after housekeeping probed it, and after claims and
	// completions: ended items keep their room until their retention
	// ends.
	clk.housekept(t)
	if err := s.Healthy(); err == nil {
		t.Fatal("Healthy turned nil while the store was still full")
	}
	cs, _, err := s.Claim(t.Context(), base, 1000, time.Minute)
	if err != nil {
		t.Fatalf("Claim in a full store: %v", err)
	}
	if len(cs) != accepted {
		t.Fatalf("Claim = %d items, want the %d accepted", len(cs), accepted)
	}
	for _, c := range cs {
		complete(t, s, c, base)
	}
	if _, err := s.Accept(t.Context(), &store.Batch{Now: base, Items: []store.NewItem{item("more", "u", big)}}); err == nil {
		t.Fatal("Accept fitted although nothing was freed")
	}
	clk.housekept(t)
	if err := s.Healthy(); err == nil {
		t.Fatal("Healthy turned nil while the store was still full")
	}

	// Past the retention, housekeeping prunes the ended items and the
	// store is writable again.
	clk.set(base.Add(2 * time.Minute))
	deadline := time.Now().Add(10 * time.Second)
	for s.Healthy() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("still unhealthy 10s after the ended items' retention: %v", s.Healthy())
		}
		clk.housekept(t)
	}
	if _, ok, _ := s.Status(t.Context(), "0"); ok {
		t.Error("an ended item past its retention was not pruned")
	}
	for i := range accepted {
		accept(t, s, base.Add(2*time.Minute), item(fmt.Sprint("again-", i), fmt.Sprint("u", i), big))
	}
}

// TestPrune: past their time, ended items, marks, idempotency keys,
// windows, early template reports and conversation states are deleted;
// waiting items stay.
func TestPrune(t *testing.T) {
	t.Parallel()
	clk := newClock(base)
	s := openSQLite(t, store.SQLiteOptions{Retention: time.Minute, WindowTTL: 90 * time.Second, Now: clk.Now})
	ctx := t.Context()
	if _, err := s.Accept(ctx, &store.Batch{Now: base, Dedupe: "msg-1", DedupeTTL: 30 * time.Second, Answer: []byte("one"),
		Touch: "u1", SetState: &store.UserState{OpenID: "u1", Name: "awaiting", TTL: 30 * time.Second},
		Items: []store.NewItem{item("a", "u1", nil)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Accept(ctx, &store.Batch{Now: base, IdemKey: "key-1", IdemFingerprint: []byte("fp"), IdemTTL: 30 * time.Second,
		Items: []store.NewItem{item("b", "u2", nil), item("waits", "u2", nil)}}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.TemplateFinished(ctx, 99, "success", base); err != nil || ok {
		t.Fatalf("TemplateFinished = %v, %v", ok, err)
	}
	for _, c := range claim(t, s, base) {
		complete(t, s, c, base)
	}
	rows := func(table string) int {
		t.Helper()
		n, err := s.CountRows(ctx, table)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Nothing is due yet: a round at base keeps everything.
	clk.housekept(t)
	for _, table := range []string{"marks", "idem", "windows", "early", "states"} {
		if rows(table) != 1 {
			t.Fatalf("%s: %d rows before anything expired, want 1", table, rows(table))
		}
	}
	if _, ok, _ := s.Status(ctx, "a"); !ok {
		t.Fatal("a ended item within its retention was pruned")
	}

	clk.set(base.Add(2 * time.Minute))
	clk.housekept(t)
	for _, id := range []string{"a", "b"} {
		if st, ok, err := s.Status(ctx, id); err != nil || ok {
			t.Errorf("Status(%s) past the retention = %+v, %v, %v; want pruned", id, st, ok, err)
		}
	}
	if st, ok, err := s.Status(ctx, "waits"); err != nil || !ok || st.State != store.StateQueued {
		t.Errorf("Status(waits) = %+v, %v, %v; want the waiting item kept", st, ok, err)
	}
	for _, table := range []string{"marks", "idem", "windows", "early", "states"} {
		if n := rows(table); n != 0 {
			t.Errorf("%s: %d rows left after pruning, want 0", table, n)
		}
	}
	if w, err := s.Window(ctx, "u1"); err != nil || w.Known {
		t.Errorf("Window(u1) after its TTL = %+v, %v; want unknown", w, err)
	}
	now := base.Add(2 * time.Minute)
	a, err := s.Accept(ctx, &store.Batch{Now: now, Dedupe: "msg-1", DedupeTTL: 30 * time.Second, Items: []store.NewItem{item("a2", "u1", nil)}})
	if err != nil || a.Duplicate {
		t.Errorf("Accept of the pruned mark = %+v, %v; want accepted", a, err)
	}
	a, err = s.Accept(ctx, &store.Batch{Now: now, IdemKey: "key-1", IdemFingerprint: []byte("other"), IdemTTL: 30 * time.Second,
		Items: []store.NewItem{item("b2", "u3", nil)}})
	if err != nil || a.Duplicate {
		t.Errorf("Accept of the pruned key = %+v, %v; want accepted", a, err)
	}
}
