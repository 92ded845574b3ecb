package storetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wxreply/wxreply/store"
)

// testConcurrent: accepters record batches for many users while senders
// claim and complete. At the end every accepted item was completed
// exactly once, each user's in the order of acceptance.
func testConcurrent(f *fx) {
	const (
		accepters = 8
		batches   = 40 // per accepter
		users     = 12
		senders   = 4
	)
	type done struct {
		id  string
		seq int64
	}
	var (
		mu        sync.Mutex
		completed = map[string][]done{} // per user, in completion order
		times     = map[string]int{}
		accepted  atomic.Int64
		failures  = make(chan error, accepters+senders)
		kick      = make(chan struct{}, 1)
		accepting sync.WaitGroup
		sending   sync.WaitGroup
	)
	stopAccepting := make(chan struct{})
	for g := range accepters {
		accepting.Go(func() {
			for i := range batches {
				// One to three items, for one or two users.
				u := (g*7 + i*5) % users
				b := &store.Batch{Now: base}
				for k := range 1 + i%3 {
					id := fmt.Sprintf("g%d-b%d-%d", g, i, k)
					b.Items = append(b.Items, item(id, fmt.Sprintf("u%02d", (u+k%2)%users)))
				}
				if _, err := f.s.Accept(f.ctx, b); err != nil {
					failures <- fmt.Errorf("Accept %d/%d: %w", g, i, err)
					return
				}
				accepted.Add(int64(len(b.Items)))
				select {
				case kick <- struct{}{}:
				default:
				}
			}
		})
	}
	go func() { accepting.Wait(); close(stopAccepting) }()

	for range senders {
		sending.Go(func() {
			for {
				// Read before claiming: nothing is accepted after this
				// says accepting ended.
				ended := false
				select {
				case <-stopAccepting:
					ended = true
				default:
				}
				cs, _, err := f.s.Claim(f.ctx, base, 5, time.Hour)
				if err != nil {
					failures <- fmt.Errorf("Claim: %w", err)
					return
				}
				if len(cs) == 0 {
					if ended {
						// Every lane left is leased by a sender that
						// will claim again after completing.
						return
					}
					select {
					case <-kick:
					case <-stopAccepting:
					}
					continue
				}
				for _, c := range cs {
					mu.Lock()
					completed[c.Item.OpenID] = append(completed[c.Item.OpenID], done{c.Item.ID, c.Item.Seq})
					times[c.Item.ID]++
					mu.Unlock()
					if _, err := f.s.Complete(f.ctx, c, store.Final{Now: base, Delivered: true, Attempts: 1}); err != nil {
						failures <- fmt.Errorf("Complete %s: %w", c.Item.ID, err)
						return
					}
				}
			}
		})
	}
	accepting.Wait()
	sending.Wait()
	close(failures)
	for err := range failures {
		f.t.Fatal(err)
	}

	total := 0
	for id, n := range times {
		if n != 1 {
			f.t.Errorf("%s completed %d times, want once", id, n)
		}
		total++
	}
	if int64(total) != accepted.Load() {
		f.t.Errorf("%d items completed, %d accepted", total, accepted.Load())
	}
	for user, ds := range completed {
		// The store's order of acceptance...
		for i := 1; i < len(ds); i++ {
			if ds[i].seq <= ds[i-1].seq {
				f.t.Errorf("%s: %s (Seq %d) completed after %s (Seq %d)", user, ds[i].id, ds[i].seq, ds[i-1].id, ds[i-1].seq)
				break
			}
		}
		// ...agrees with each accepter's: its batches one after the
		// other, a batch's items in order.
		last := map[int]string{} // accepter: the key of its last item
		lastID := map[int]string{}
		for _, d := range ds {
			var g, b, k int
			if _, err := fmt.Sscanf(d.id, "g%d-b%d-%d", &g, &b, &k); err != nil {
				f.t.Fatalf("item id %q: %v", d.id, err)
			}
			key := fmt.Sprintf("%03d-%03d", b, k)
			if prev, ok := last[g]; ok && prev > key {
				f.t.Errorf("%s: %s completed after %s, accepted later by the same accepter", user, d.id, lastID[g])
			}
			last[g], lastID[g] = key, d.id
		}
	}
	f.pending(0)
	if cs := f.claimAll(base); len(cs) != 0 {
		f.t.Errorf("after everything completed, Claim = %v", ids(cs))
	}
}
