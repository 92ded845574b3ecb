package handlers

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/patrickmn/go-cache"
)

// idempotency remembers the push API's Idempotency-Keys: which request
// each was first used for and the id that request was given, so that a
// client's retry never sends a message twice. A retry that arrives while
// the first request is still being handled waits for its outcome.
//
// It holds at most max keys. Beyond that a new key is refused rather than
// an old one forgotten: forgetting would let that key's retry send again.
type idempotency struct {
	mu        sync.Mutex // makes "look up, then add or delete" atomic
	seen      *cache.Cache
	max       int
	fullSweep time.Duration // sweepWhenFull, or the TTL when shorter
	lastSweep time.Time
}

// How often begin drops expired keys: every sweepEvery, and every
// sweepWhenFull while the store is full. Sweeping on use rather than with
// go-cache's janitor leaves no goroutine behind; the bound on sweeps keeps
// a full store from costing a scan per request.
const (
	sweepEvery    = time.Hour
	sweepWhenFull = time.Minute
)

// keyEntry is one Idempotency-Key in use.
type keyEntry struct {
	fingerprint [sha256.Size]byte
	done        chan struct{} // closed once id and ok are set
	id          string
	ok          bool // false: the first request was refused and forgotten
}

func newIdempotency(ttl time.Duration, maxKeys int) *idempotency {
	return &idempotency{seen: cache.New(ttl, 0), max: maxKeys, fullSweep: min(ttl, sweepWhenFull), lastSweep: time.Now()}
}

// begin claims key for a request with fingerprint fp. first is true when
// the key is new: the caller handles the request and must call complete
// or abandon. Otherwise entry is the key's first request, to compare
// fingerprints with and wait on. full is true, with no entry, when the key
// is new and the store holds its maximum.
func (s *idempotency) begin(key string, fp [sha256.Size]byte) (entry *keyEntry, first, full bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if now.Sub(s.lastSweep) >= sweepEvery {
		s.seen.DeleteExpired()
		s.lastSweep = now
	}
	if v, ok := s.seen.Get(key); ok {
		return v.(*keyEntry), false, false
	}
	if s.seen.ItemCount() >= s.max {
		// ItemCount includes expired keys not yet swept.
		if now.Sub(s.lastSweep) >= s.fullSweep {
			s.seen.DeleteExpired()
			s.lastSweep = now
		}
		if s.seen.ItemCount() >= s.max {
			return nil, false, true
		}
	}
	e := &keyEntry{fingerprint: fp, done: make(chan struct{})}
	s.seen.Set(key, e, cache.DefaultExpiration)
	return e, true, false
}

// complete records that the key's request was accepted as id.
func (e *keyEntry) complete(id string) {
	e.id, e.ok = id, true
	close(e.done)
}

// abandon forgets key after its request was refused, so that nothing is
// remembered for a request that sent nothing, and releases waiting
// retries to try for themselves.
func (s *idempotency) abandon(key string, e *keyEntry) {
	s.mu.Lock()
	if v, ok := s.seen.Get(key); ok && v.(*keyEntry) == e {
		s.seen.Delete(key)
	}
	s.mu.Unlock()
	close(e.done)
}

// wait returns the outcome of the key's first request: its id with ok
// true when accepted, ok false when it was refused. err is ctx's when the
// caller gives up first.
func (e *keyEntry) wait(ctx context.Context) (id string, ok bool, err error) {
	select {
	case <-e.done:
		return e.id, e.ok, nil
	case <-ctx.Done():
		return "", false, ctx.Err()
	}
}
