package store

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// TestBindingTableModel: the table in memory finds exactly the bindings
// a plain model of its ring holds — the latest of each key among the
// last slots made — through collisions, keys made again and the ring
// wrapping; and its horizon is the latest signed time pushed out live.
func TestBindingTableModel(t *testing.T) {
	const slots = 37
	tab := newBindingTable(slots)
	var made []binding // every binding, in order
	var horizon uint32
	rng := rand.New(rand.NewPCG(1, 2))
	now := int64(1_000_000)
	for n := range 20000 {
		now += 100
		// Keys from a small range collide in the index and come back.
		b := binding{key: uint64(rng.IntN(64)) << rng.IntN(3), body: rng.Uint64(), at: uint32(now / 1000),
			expires: uint32(now/1000) + uint32(rng.IntN(4))}
		if len(made) >= slots {
			if old := made[len(made)-slots]; old.live(now) {
				horizon = max(horizon, old.at)
			}
		}
		tab.add(b, now)
		made = append(made, b)
		if tab.horizon != horizon {
			t.Fatalf("after %d adds: horizon %d, want %d", n+1, tab.horizon, horizon)
		}
		held := made[max(0, len(made)-slots):]
		for key := uint64(0); key < 256; key++ {
			var want binding
			found := false
			for _, h := range held {
				if h.key == key {
					want, found = h, true // the latest wins
				}
			}
			got, ok := tab.find(key)
			if ok != found || got != want {
				t.Fatalf("after %d adds: find(%d) = %+v, %v; want %+v, %v", n+1, key, got, ok, want, found)
			}
		}
	}
}

// TestBindingsOfOneTransaction: two batches of one transaction under the
// same query see each other's binding before it reaches the table.
func TestBindingsOfOneTransaction(t *testing.T) {
	s, err := OpenSQLite(SQLiteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
	batch := func(body string) *Batch {
		return &Batch{Now: now, Query: "sig:1:n", QueryBody: []byte(body), QueryTTL: time.Minute, QueryAt: now}
	}
	var first, retry, other error
	if err := s.do(context.Background(), "test", true, func(tx *txn) error {
		first = s.bindQuery(tx, batch("body"), ms(now))
		retry = s.bindQuery(tx, batch("body"), ms(now))
		other = s.bindQuery(tx, batch("another body"), ms(now))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if first != nil || retry != nil || !errors.Is(other, ErrQueryReused) {
		t.Fatalf("first %v, the same body again %v, another body %v; want nil, nil, ErrQueryReused", first, retry, other)
	}
	if n, err := s.CountRows(context.Background(), "bindings"); err != nil || n != 1 {
		t.Errorf("%d bindings written, %v; want 1", n, err)
	}
}
