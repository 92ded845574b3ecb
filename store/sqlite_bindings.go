package store

import (
	"crypto/sha256"
	"encoding/binary"
)

// The SQLite store's signed-query bindings are looked up in memory and
// written to the store as a log.
//
// Every plaintext callback binds its signed query to its body, and the
// binding's key is a hash: in a B-tree keyed by it, each callback's
// binding landed on a page of its own, which its COMMIT and the next
// checkpoint wrote (a fifth of a callback's cost on the binary). So the
// bindings table is a log in the order bindings are made, whose rows
// share their pages, and the look-ups go to a table in memory of fixed
// size, filled from the log when the store opens.
//
// The table holds the latest bindingSlots bindings. Memory does not grow
// with the callbacks: the table is allocated once, its entries hold no
// pointers, and a binding past the last slot takes the oldest one's. A
// binding pushed out while still in force leaves the store unable to
// vouch for queries signed as early as it was: those are refused as
// reused (the horizon). At the default size that takes more than 17,000
// callbacks a second for 15 s, longer than WeChat's retries of a
// callback take, and beyond what one instance of wxreply answers.

// DefaultBindingSlots is how many signed-query bindings the SQLite store
// holds in memory: 24 bytes each, and an index of 8 bytes a binding.
const DefaultBindingSlots = 1 << 18

// binding is one signed query's binding to its body.
type binding struct {
	key     uint64 // markKey of the query
	body    uint64 // bodyTag of the body's hash
	at      uint32 // the query's signed time, Unix seconds; 0 unknown
	expires uint32 // Unix seconds, rounded up
}

// live reports whether b is in force at now (Unix milliseconds).
func (b *binding) live(now int64) bool { return int64(b.expires)*1000 > now }

// bodyTag is the 64 bits of a body's hash that a binding keeps: the first
// 8 bytes of a SHA-256 (what callbacks give), or of the SHA-256 of
// anything else; a tag of 8 bytes is itself (bindings moved from the
// version that kept 8 bytes).
func bodyTag(h []byte) uint64 {
	if len(h) != sha256.Size && len(h) != 8 {
		s := sha256.Sum256(h)
		h = s[:]
	}
	return binary.BigEndian.Uint64(h[:8])
}

// expirySeconds rounds a time in Unix milliseconds up to seconds.
func expirySeconds(ms int64) uint32 {
	if ms <= 0 {
		return 0
	}
	return uint32((ms + 999) / 1000)
}

// bindingTable is the bindings in memory: a ring in the order they were
// made, and an open-addressing index from key to slot (linear probing,
// at most half full). Only the writer goroutine uses it.
type bindingTable struct {
	ring    []binding
	next    int      // the slot the next binding takes
	used    int      // slots filled
	index   []uint32 // slot+1, 0 empty
	mask    uint64
	horizon uint32 // the latest signed time of a binding pushed out while in force
}

func newBindingTable(slots int) *bindingTable {
	if slots <= 0 {
		slots = DefaultBindingSlots
	}
	n := 2
	for n < 2*slots {
		n *= 2
	}
	return &bindingTable{ring: make([]binding, slots), index: make([]uint32, n), mask: uint64(n - 1)}
}

// reset empties t, as newBindingTable made it, keeping its memory.
func (t *bindingTable) reset() {
	clear(t.ring)
	clear(t.index)
	t.next, t.used, t.horizon = 0, 0, 0
}

// find returns the binding of key, live or not.
func (t *bindingTable) find(key uint64) (binding, bool) {
	for i := key & t.mask; ; i = (i + 1) & t.mask {
		v := t.index[i]
		if v == 0 {
			return binding{}, false
		}
		if b := t.ring[v-1]; b.key == key {
			return b, true
		}
	}
}

// add records b, taking the oldest slot when all are filled. now is in
// Unix milliseconds.
func (t *bindingTable) add(b binding, now int64) {
	slot := t.next
	if t.used == len(t.ring) {
		old := &t.ring[slot]
		t.remove(old.key, slot)
		if old.live(now) {
			t.horizon = max(t.horizon, old.at)
		}
	} else {
		t.used++
	}
	t.ring[slot] = b
	t.next = (slot + 1) % len(t.ring)
	// An earlier binding of the same key (expired: a live one is never
	// made again) gives its place in the index to this one.
	i := b.key & t.mask
	for ; t.index[i] != 0; i = (i + 1) & t.mask {
		if t.ring[t.index[i]-1].key == b.key {
			break
		}
	}
	t.index[i] = uint32(slot + 1)
}

// addAll records the bindings a transaction made, once it committed.
func (t *bindingTable) addAll(made []madeBinding) {
	for _, b := range made {
		t.add(b.binding, b.now)
	}
}

// remove takes key out of the index if it points at slot.
func (t *bindingTable) remove(key uint64, slot int) {
	i := key & t.mask
	for ; ; i = (i + 1) & t.mask {
		v := t.index[i]
		if v == 0 {
			return // a newer binding of the key took its place
		}
		if v == uint32(slot+1) {
			break
		}
	}
	// Shift back the entries after the hole that would no longer be
	// found past it.
	for j := (i + 1) & t.mask; t.index[j] != 0; j = (j + 1) & t.mask {
		home := t.ring[t.index[j]-1].key & t.mask
		if (j-home)&t.mask >= (j-i)&t.mask {
			t.index[i] = t.index[j]
			i = j
		}
	}
	t.index[i] = 0
}
