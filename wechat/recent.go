package wechat

import (
	"container/list"
	"time"
)

// recent is a map that forgets: an entry lives ttl after its last set,
// and beyond max entries the least recently set goes first. Entries are
// kept in the order they were last set, so both rules only ever look at
// the oldest: memory stays bounded however fast entries come, at O(1)
// per operation. Not safe for concurrent use; its owner locks.
type recent[V any] struct {
	ttl   time.Duration
	max   int
	order *list.List // of *recentEntry[V], least recently set first
	items map[string]*list.Element
}

type recentEntry[V any] struct {
	key     string
	val     V
	expires time.Time
}

func newRecent[V any](ttl time.Duration, max int) *recent[V] {
	return &recent[V]{ttl: ttl, max: max, order: list.New(), items: make(map[string]*list.Element)}
}

func (r *recent[V]) get(key string, now time.Time) (V, bool) {
	el, ok := r.items[key]
	if !ok || !now.Before(el.Value.(*recentEntry[V]).expires) {
		var zero V
		return zero, false
	}
	return el.Value.(*recentEntry[V]).val, true
}

// set stores v under key as the newest entry and drops what has expired
// or is over max.
func (r *recent[V]) set(key string, v V, now time.Time) {
	if el, ok := r.items[key]; ok {
		e := el.Value.(*recentEntry[V])
		e.val, e.expires = v, now.Add(r.ttl)
		r.order.MoveToBack(el)
	} else {
		r.items[key] = r.order.PushBack(&recentEntry[V]{key: key, val: v, expires: now.Add(r.ttl)})
	}
	r.deleteExpired(now)
	for r.order.Len() > r.max {
		r.remove(r.order.Front())
	}
}

func (r *recent[V]) delete(key string) {
	if el, ok := r.items[key]; ok {
		r.remove(el)
	}
}

// take returns and deletes the entry under key.
func (r *recent[V]) take(key string, now time.Time) (V, bool) {
	v, ok := r.get(key, now)
	r.delete(key)
	return v, ok
}

// deleteExpired drops the entries expired at now. Every entry has the
// same ttl, so they expire in list order.
func (r *recent[V]) deleteExpired(now time.Time) {
	for el := r.order.Front(); el != nil && !now.Before(el.Value.(*recentEntry[V]).expires); el = r.order.Front() {
		r.remove(el)
	}
}

func (r *recent[V]) remove(el *list.Element) {
	delete(r.items, el.Value.(*recentEntry[V]).key)
	r.order.Remove(el)
}

func (r *recent[V]) len() int { return r.order.Len() }
