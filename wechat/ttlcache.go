package wechat

import (
	"time"

	"github.com/patrickmn/go-cache"
)

// ttlCache is an in-memory cache whose entries expire: go-cache behind the
// key and value types of its one use, so that no caller asserts a type.
// It runs no janitor goroutine (nothing would own it): an expired entry
// is never returned, and each Set drops the expired ones, so entries no
// longer asked for (the files of rules a reload removed) do not stay.
// Sets are rare — a token fetch, an upload — and the caches small: the
// access token, and one media_id per local file the rules name. Nothing
// an outsider sends adds an entry, so no bound on the size is needed.
type ttlCache[K ~string, V any] struct {
	c *cache.Cache
}

func newTTLCache[K ~string, V any]() *ttlCache[K, V] {
	return &ttlCache[K, V]{c: cache.New(cache.NoExpiration, 0)}
}

// Get returns the value under key, and false when there is none or it
// expired.
func (t *ttlCache[K, V]) Get(key K) (V, bool) {
	v, ok := t.c.Get(string(key))
	if !ok {
		var zero V
		return zero, false
	}
	return v.(V), true // only Set puts values in, all of type V
}

// Set puts v under key for ttl. A ttl of zero or less stores nothing and
// drops what key held: go-cache would read 0 as "never expires".
func (t *ttlCache[K, V]) Set(key K, v V, ttl time.Duration) {
	if ttl <= 0 {
		t.c.Delete(string(key))
		return
	}
	t.c.DeleteExpired()
	t.c.Set(string(key), v, ttl)
}

// Delete drops what key holds, if anything.
func (t *ttlCache[K, V]) Delete(key K) {
	t.c.Delete(string(key))
}
