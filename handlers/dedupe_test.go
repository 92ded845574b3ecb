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
		key := "msg:" + strconv.Itoa(i)
		a, first := d.begin(key)
		if !first {
			t.Fatalf("key %d taken for a retry", i)
		}
		var reply []byte
		if i%2 == 0 { // half answered success, which share one answer
			reply = []byte("<xml/>")
		}
		d.finish(key, a, reply)
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
				d.finish("evt:o:1:subscribe", a, []byte("reply"))
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

// TestDedupeSuccessShared: a callback answered success is remembered as
// the shared finished answer, and its retries, waiting already or
// arriving later, are answered success too.
func TestDedupeSuccessShared(t *testing.T) {
	d := newDedupe(time.Minute)
	a, first := d.begin("msg:1")
	if !first {
		t.Fatal("first copy taken for a retry")
	}
	waiting := make(chan []byte)
	go func() {
		b, _ := d.begin("msg:1")
		r, ok := b.wait()
		if !ok {
			r = []byte("timeout")
		}
		waiting <- r
	}()
	time.Sleep(10 * time.Millisecond) // let the retry start waiting on a
	d.finish("msg:1", a, nil)
	if r := <-waiting; r != nil {
		t.Fatalf("retry waiting during the first copy got %q, want success (nil)", r)
	}
	later, first := d.begin("msg:1")
	if first {
		t.Fatal("a retry after the first copy was handled again")
	}
	if later != d.none {
		t.Fatal("a finished success is not remembered as the shared answer")
	}
	if r, ok := later.wait(); !ok || r != nil {
		t.Fatalf("later retry got %q, %v", r, ok)
	}
}
