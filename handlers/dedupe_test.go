package handlers

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestDedupeForgets: remembered callbacks are dropped once their TTL has
// passed, so the memory a flood of distinct messages takes is bounded by
// the TTL, and a key seen again afterwards is handled as new.
func TestDedupeForgets(t *testing.T) {
	const ttl = 20 * time.Millisecond
	d := newDedupe(ttl)
	for i := range 1000 {
		a, first := d.begin("msg:" + strconv.Itoa(i))
		if !first {
			t.Fatalf("key %d taken for a retry", i)
		}
		a.finish([]byte("<xml/>"))
	}
	for deadline := time.Now().Add(5 * time.Second); d.seen.ItemCount() > 0; time.Sleep(ttl) {
		if time.Now().After(deadline) {
			t.Fatalf("%d entries still held long after their TTL: nothing evicts them", d.seen.ItemCount())
		}
	}
	if _, first := d.begin("msg:0"); !first {
		t.Fatal("an expired key is still taken for a retry")
	}
}

// TestDedupeOneFirstCopy: of many copies arriving at once, exactly one is
// handled and the others get its reply.
func TestDedupeOneFirstCopy(t *testing.T) {
	d := newDedupe(time.Minute)
	var firsts atomic.Int32
	var wg sync.WaitGroup
	replies := make([]string, 50)
	for i := range replies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, first := d.begin("evt:o:1:subscribe")
			if first {
				firsts.Add(1)
				a.finish([]byte("reply"))
			}
			r, ok := a.wait()
			if ok {
				replies[i] = string(r)
			}
		}()
	}
	wg.Wait()
	if firsts.Load() != 1 {
		t.Fatalf("%d copies handled, want 1", firsts.Load())
	}
	for i, r := range replies {
		if r != "reply" {
			t.Errorf("copy %d got %q", i, r)
		}
	}
}
