package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/wxreply/wxreply/store"
)

// Accept's marks and keys: WeChat's retries and the push API's
// Idempotency-Key record nothing the second time.

const dedupeTTL = time.Minute

func testDedupe(f *fx) {
	first := f.acceptBatch(&store.Batch{Now: base, Dedupe: "msg-1", DedupeTTL: dedupeTTL, Answer: []byte("answer 1"),
		Touch: "u1", Items: []store.NewItem{item("a", "u1")}})
	if first.Duplicate || !slices.Equal(first.IDs, []string{"a"}) || string(first.Answer) != "answer 1" {
		f.t.Fatalf("first Accept = %+v, want IDs [a], answer 1, not duplicate", first)
	}
	// WeChat's retry, within the TTL: nothing recorded, the first answer.
	retry := f.acceptBatch(&store.Batch{Now: at(dedupeTTL - time.Millisecond), Dedupe: "msg-1", DedupeTTL: dedupeTTL,
		Answer: []byte("answer 2"), Touch: "u1", Items: []store.NewItem{item("b", "u1"), item("c", "u2")}})
	if !retry.Duplicate || string(retry.Answer) != "answer 1" {
		f.t.Fatalf("retry Accept = %+v, want duplicate with answer 1", retry)
	}
	f.noStatus("b")
	f.noStatus("c")
	f.pending(1)
	if w := f.window("u1"); !w.Last.Equal(base) {
		f.t.Errorf("duplicate batch moved u1's window: Last %s, want base", show(w.Last))
	}
	c := f.claimOne(at(time.Second), "a")
	f.complete(c, at(time.Second))
	f.claimNone(at(time.Second))

	// The mark ran out: the same key is accepted anew.
	later := at(dedupeTTL + time.Millisecond)
	again := f.acceptBatch(&store.Batch{Now: later, Dedupe: "msg-1", DedupeTTL: dedupeTTL, Answer: []byte("answer 3"),
		Items: []store.NewItem{item("d", "u1")}})
	if again.Duplicate || !slices.Equal(again.IDs, []string{"d"}) || string(again.Answer) != "answer 3" {
		f.t.Fatalf("Accept after the TTL = %+v, want IDs [d], answer 3, not duplicate", again)
	}
	f.claimOne(later, "d")
	// And the new mark answers the next retry with the new answer.
	dup := f.acceptBatch(&store.Batch{Now: later.Add(time.Second), Dedupe: "msg-1", DedupeTTL: dedupeTTL,
		Items: []store.NewItem{item("e", "u1")}})
	if !dup.Duplicate || string(dup.Answer) != "answer 3" {
		f.t.Fatalf("retry of the renewed mark = %+v, want duplicate with answer 3", dup)
	}
	f.noStatus("e")
}

// testDedupeAnswerOnly: a callback answered passively records a mark
// and no item.
func testDedupeAnswerOnly(f *fx) {
	first := f.acceptBatch(&store.Batch{Now: base, Dedupe: "ev-1", DedupeTTL: dedupeTTL, Answer: []byte("<xml>hi</xml>")})
	if first.Duplicate || len(first.IDs) != 0 {
		f.t.Fatalf("first Accept = %+v, want no IDs, not duplicate", first)
	}
	dup := f.acceptBatch(&store.Batch{Now: at(time.Second), Dedupe: "ev-1", DedupeTTL: dedupeTTL, Answer: []byte("other")})
	if !dup.Duplicate || string(dup.Answer) != "<xml>hi</xml>" {
		f.t.Fatalf("retry = %+v, want duplicate with the first answer", dup)
	}
	// A callback that was answered success (no passive reply) leaves a
	// mark whose retries are answered success too: no answer, not an
	// empty one.
	f.acceptBatch(&store.Batch{Now: base, Dedupe: "msg-quiet", DedupeTTL: dedupeTTL, Items: []store.NewItem{item("q", "u9")}})
	if quiet := f.acceptBatch(&store.Batch{Now: at(time.Second), Dedupe: "msg-quiet", DedupeTTL: dedupeTTL}); !quiet.Duplicate || quiet.Answer != nil {
		f.t.Fatalf("retry of a callback answered success = %+v, want duplicate with a nil answer", quiet)
	}
	// Marks are per key.
	other := f.acceptBatch(&store.Batch{Now: at(time.Second), Dedupe: "ev-2", DedupeTTL: dedupeTTL, Answer: []byte("two")})
	if other.Duplicate {
		f.t.Fatalf("another key = %+v, want not duplicate", other)
	}
	f.pending(1)
}

const idemTTL = time.Hour

func idemBatch(now time.Time, key, fp string, items ...store.NewItem) *store.Batch {
	return &store.Batch{Now: now, IdemKey: key, IdemFingerprint: []byte(fp), IdemTTL: idemTTL, Items: items}
}

func testIdempotency(f *fx) {
	first := f.acceptBatch(idemBatch(base, "key-1", "fp-A", item("p1", "u1"), item("p2", "u1")))
	if first.Duplicate || !slices.Equal(first.IDs, []string{"p1", "p2"}) {
		f.t.Fatalf("first Accept = %+v, want IDs [p1 p2]", first)
	}
	// The same request again: the first IDs, nothing new.
	dup := f.acceptBatch(idemBatch(at(time.Minute), "key-1", "fp-A", item("q1", "u1"), item("q2", "u2")))
	if !dup.Duplicate || !slices.Equal(dup.IDs, []string{"p1", "p2"}) {
		f.t.Fatalf("repeated Accept = %+v, want duplicate with IDs [p1 p2]", dup)
	}
	f.noStatus("q1")
	f.noStatus("q2")
	f.pending(2)
	c := f.claimOne(at(time.Minute), "p1")
	f.complete(c, at(time.Minute))
	f.complete(f.claimOne(at(time.Minute), "p2"), at(time.Minute))
	f.claimNone(at(time.Minute))

	// Another request under the same key.
	_, err := f.s.Accept(f.ctx, idemBatch(at(2*time.Minute), "key-1", "fp-B", item("r1", "u3")))
	if !errors.Is(err, store.ErrIdempotencyConflict) {
		f.t.Fatalf("Accept with another fingerprint: %v, want ErrIdempotencyConflict", err)
	}
	f.noStatus("r1")
	f.pending(0)
	f.claimNone(at(2 * time.Minute))

	// The key ran out: accepted anew, whatever the fingerprint.
	later := at(idemTTL + time.Millisecond)
	anew := f.acceptBatch(idemBatch(later, "key-1", "fp-B", item("s1", "u1")))
	if anew.Duplicate || !slices.Equal(anew.IDs, []string{"s1"}) {
		f.t.Fatalf("Accept after the TTL = %+v, want IDs [s1], not duplicate", anew)
	}
	f.claimOne(later, "s1")
	// The renewed key remembers the new request.
	if _, err := f.s.Accept(f.ctx, idemBatch(later, "key-1", "fp-A", item("t1", "u1"))); !errors.Is(err, store.ErrIdempotencyConflict) {
		f.t.Fatalf("the old fingerprint under the renewed key: %v, want ErrIdempotencyConflict", err)
	}
}

// testIdempotencyConflictRecordsNothing: the conflict leaves the batch's
// mark and touch unrecorded too.
func testIdempotencyConflictRecordsNothing(f *fx) {
	f.acceptBatch(idemBatch(base, "key-1", "fp-A", item("p1", "u1")))
	b := idemBatch(at(time.Second), "key-1", "fp-B", item("r1", "u2"))
	b.Dedupe, b.DedupeTTL, b.Answer, b.Touch = "msg-9", dedupeTTL, []byte("nine"), "u2"
	if _, err := f.s.Accept(f.ctx, b); !errors.Is(err, store.ErrIdempotencyConflict) {
		f.t.Fatalf("Accept: %v, want ErrIdempotencyConflict", err)
	}
	if w := f.window("u2"); w.Known {
		f.t.Errorf("the refused batch touched u2: %+v", w)
	}
	again := f.acceptBatch(&store.Batch{Now: at(2 * time.Second), Dedupe: "msg-9", DedupeTTL: dedupeTTL, Answer: []byte("ten")})
	if again.Duplicate {
		f.t.Errorf("the refused batch recorded its mark: %+v", again)
	}
	f.pending(1)
}

// testIdempotencyIDsAsGiven: a repeated request gets back the very IDs
// the first one recorded, whatever characters the push client chose.
func testIdempotencyIDsAsGiven(f *fx) {
	want := []string{"order 17,line 2", "[x]", `"q"`, "a,b,,c"}
	var items []store.NewItem
	for _, id := range want {
		items = append(items, item(id, "u1"))
	}
	f.acceptBatch(idemBatch(base, "key-1", "fp", items...))
	dup := f.acceptBatch(idemBatch(at(time.Second), "key-1", "fp", item("other", "u1")))
	if !dup.Duplicate || !slices.Equal(dup.IDs, want) {
		f.t.Fatalf("repeated Accept = %q (duplicate %v), want %q", dup.IDs, dup.Duplicate, want)
	}
	// A key that recorded no item answers with none.
	f.acceptBatch(idemBatch(base, "key-2", "fp", nil...))
	if dup := f.acceptBatch(idemBatch(at(time.Second), "key-2", "fp", item("late", "u2"))); !dup.Duplicate || len(dup.IDs) != 0 {
		f.t.Fatalf("repeated Accept of an empty request = %+v, want duplicate, no IDs", dup)
	}
	f.noStatus("late")
}

// testConcurrentDuplicates: of many copies of one callback or one push
// racing, exactly one is recorded and the others get its answer.
func testConcurrentDuplicates(f *fx) {
	const n = 16
	type result struct {
		a   store.Accepted
		err error
	}
	for _, kind := range []string{"dedupe", "idem"} {
		results := make([]result, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				id := fmt.Sprintf("%s-%d", kind, i)
				b := &store.Batch{Now: base, Items: []store.NewItem{item(id, "u-"+kind)}}
				if kind == "dedupe" {
					b.Dedupe, b.DedupeTTL, b.Answer = "msg-1", dedupeTTL, []byte(id)
				} else {
					b.IdemKey, b.IdemFingerprint, b.IdemTTL = "key-1", []byte("fp"), idemTTL
				}
				a, err := f.s.Accept(f.ctx, b)
				results[i] = result{a, err}
			})
		}
		wg.Wait()
		var winner string
		for i, r := range results {
			if r.err != nil {
				f.t.Fatalf("%s Accept %d: %v", kind, i, r.err)
			}
			if !r.a.Duplicate {
				if winner != "" {
					f.t.Fatalf("%s: both %s and %d recorded", kind, winner, i)
				}
				winner = fmt.Sprintf("%s-%d", kind, i)
			}
		}
		if winner == "" {
			f.t.Fatalf("%s: every copy was a duplicate", kind)
		}
		for i, r := range results {
			if !r.a.Duplicate {
				continue
			}
			if kind == "dedupe" && string(r.a.Answer) != winner {
				f.t.Errorf("dedupe copy %d answered %q, want the recorded %q", i, r.a.Answer, winner)
			}
			if kind == "idem" && !slices.Equal(r.a.IDs, []string{winner}) {
				f.t.Errorf("idem copy %d got IDs %v, want [%s]", i, r.a.IDs, winner)
			}
		}
		f.claimOne(base, winner)
	}
	f.pending(2)
}

// testQueryOneBody: a signed query serves the body it was first seen
// with; another body under it records nothing, mark and window included,
// until the query runs out.
func testQueryOneBody(f *fx) {
	const ttl = 5 * time.Minute
	batch := func(now time.Time, body, dedupe, id, openid string) *store.Batch {
		return &store.Batch{Now: now, Query: "sig:ts:nonce", QueryBody: []byte(body), QueryTTL: ttl,
			Dedupe: dedupe, DedupeTTL: dedupeTTL, Touch: openid, Items: []store.NewItem{item(id, openid)}}
	}
	first := f.acceptBatch(batch(base, "body-1", "msg-1", "a", "u1"))
	if first.Duplicate {
		f.t.Fatalf("first Accept = %+v", first)
	}
	// Another body under the same query: refused, nothing recorded.
	_, err := f.s.Accept(f.ctx, batch(at(time.Second), "body-2", "msg-2", "b", "u2"))
	if !errors.Is(err, store.ErrQueryReused) {
		f.t.Fatalf("another body under the query: %v, want ErrQueryReused", err)
	}
	f.noStatus("b")
	if w := f.window("u2"); w.Known {
		f.t.Errorf("the refused batch touched u2: %+v", w)
	}
	if a := f.acceptBatch(&store.Batch{Now: at(2 * time.Second), Dedupe: "msg-2", DedupeTTL: dedupeTTL, Answer: []byte("x")}); a.Duplicate {
		f.t.Error("the refused batch recorded its mark")
	}
	// The same body again is WeChat's retry: the mark answers it.
	retry := f.acceptBatch(batch(at(3*time.Second), "body-1", "msg-1", "c", "u1"))
	if !retry.Duplicate {
		f.t.Fatalf("the same body again = %+v, want duplicate", retry)
	}
	f.noStatus("c")
	// Other queries are free.
	other := f.acceptBatch(&store.Batch{Now: at(4 * time.Second), Query: "sig2:ts:nonce", QueryBody: []byte("body-2"), QueryTTL: ttl,
		Items: []store.NewItem{item("d", "u3")}})
	if other.Duplicate {
		f.t.Fatalf("another query = %+v", other)
	}
	// Once the query ran out, it binds anew.
	later := f.acceptBatch(batch(at(ttl+time.Millisecond), "body-3", "msg-3", "e", "u4"))
	if later.Duplicate {
		f.t.Fatalf("after the query's TTL = %+v", later)
	}
	f.pending(3)
}
