package store_test

import (
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/store/storetest"
)

// openRedis opens a Redis store under a prefix of its own on the tests'
// redis-server.
func openRedis(t *testing.T, o store.RedisOptions) *store.Redis {
	t.Helper()
	if o.URL == "" {
		o.URL = storetest.RedisURL(t) + "?prefix=" + url.QueryEscape(storetest.RedisPrefix(t))
	}
	if o.Logger == nil {
		o.Logger = quiet
	}
	s, err := store.OpenRedis(o)
	if err != nil {
		t.Fatalf("OpenRedis: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestRedis(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return openRedis(t, store.RedisOptions{}) })
}

// logBuffer collects a store's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The URL's user, password, database and prefix are used; a wrong
// password stops Open with an error that does not repeat it.
func TestRedisURL(t *testing.T) {
	t.Parallel()
	srv := storetest.StartRedis(t, storetest.RedisServerOptions{Password: "s3cret-pw"})
	u := "redis://default:s3cret-pw@" + srv.Addr() + "/3?prefix=acct1:"
	s := openRedis(t, store.RedisOptions{URL: u})
	accept(t, s, base, item("a", "u1", nil))
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: "s3cret-pw", DB: 3})
	defer rdb.Close()
	if n, err := rdb.Exists(t.Context(), "acct1:item:a").Result(); err != nil || n != 1 {
		t.Errorf("item a under prefix acct1: in db 3: %d, %v", n, err)
	}

	_, err := store.OpenRedis(store.RedisOptions{URL: "redis://default:wrong-pw@" + srv.Addr() + "/0", Logger: quiet})
	if err == nil || strings.Contains(err.Error(), "wrong-pw") {
		t.Errorf("OpenRedis with a wrong password = %v, want an error without it", err)
	}
	if err != nil && !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("OpenRedis with a wrong password = %v, want Redis's WRONGPASS", err)
	}
}

// Two prefixes on one Redis are two stores: neither sees the other's
// outbox, marks or counts.
func TestRedisPrefixesApart(t *testing.T) {
	t.Parallel()
	a := openRedis(t, store.RedisOptions{})
	b := openRedis(t, store.RedisOptions{})
	accept(t, a, base, item("x", "u1", nil))
	if cs, _, err := b.Claim(t.Context(), base, 10, time.Minute); err != nil || len(cs) != 0 {
		t.Errorf("the other prefix claimed %d items (%v)", len(cs), err)
	}
	if n, err := b.Pending(t.Context()); err != nil || n != 0 {
		t.Errorf("the other prefix's Pending = %d, %v", n, err)
	}
	if _, ok, _ := b.Status(t.Context(), "x"); ok {
		t.Error("the other prefix knows item x")
	}
	if cs, _, err := a.Claim(t.Context(), base, 10, time.Minute); err != nil || len(cs) != 1 {
		t.Errorf("its own prefix claimed %d items (%v)", len(cs), err)
	}
}

// Redis killed: calls fail with an error, never a panic, and the store is
// unhealthy; Redis back (its append-only file replayed): healthy again by
// itself, with what was accepted before.
func TestRedisDownAndBack(t *testing.T) {
	t.Parallel()
	srv := storetest.StartRedis(t, storetest.RedisServerOptions{Args: []string{"--appendfsync", "always"}})
	var logs logBuffer
	s := openRedis(t, store.RedisOptions{URL: srv.URL(), HealthEvery: 20 * time.Millisecond, Timeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	accept(t, s, base, item("before", "u1", nil))
	if err := s.Healthy(); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
	srv.Kill()
	if _, err := s.Accept(t.Context(), &store.Batch{Now: base, Items: []store.NewItem{item("during", "u2", nil)}}); err == nil {
		t.Error("Accept with Redis down succeeded")
	}
	waitUntil(t, "the store to turn unhealthy", func() bool { return s.Healthy() != nil })
	if _, _, err := s.Claim(t.Context(), base, 10, time.Minute); err == nil {
		t.Error("Claim with Redis down succeeded")
	}
	srv.Start()
	waitUntil(t, "the store to turn healthy", func() bool { return s.Healthy() == nil })
	cs, _, err := s.Claim(t.Context(), base, 10, time.Minute)
	if err != nil || len(cs) != 1 || cs[0].Item.ID != "before" {
		t.Fatalf("Claim after Redis came back = %v, %v; want the item accepted before", cs, err)
	}
	if n, _ := s.Pending(t.Context()); n != 1 {
		t.Errorf("Pending = %d, want 1: the refused batch must not be recorded", n)
	}
	out := logs.String()
	for _, want := range []string{"store cannot be written", "store writable again"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// A Redis that would lose the outbox at its restart, or evict it, is
// named at start-up.
func TestRedisPersistenceWarnings(t *testing.T) {
	t.Parallel()
	srv := storetest.StartRedis(t, storetest.RedisServerOptions{NoAppendOnly: true,
		Args: []string{"--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"}})
	var logs logBuffer
	openRedis(t, store.RedisOptions{URL: srv.URL(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	out := logs.String()
	for _, want := range []string{"set appendonly yes", "set maxmemory-policy noeviction"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	// With both set right, no warning.
	good := storetest.StartRedis(t, storetest.RedisServerOptions{})
	var quietLogs logBuffer
	openRedis(t, store.RedisOptions{URL: good.URL(), Logger: slog.New(slog.NewTextHandler(&quietLogs, nil))})
	if out := quietLogs.String(); strings.Contains(out, "WARN") {
		t.Errorf("a well-configured Redis was warned about:\n%s", out)
	}
}

// The shared token: kept with its life, forgotten only by its own value;
// one fetch lock at a time, freed by its holder or its expiry.
func TestRedisSharedToken(t *testing.T) {
	t.Parallel()
	s := openRedis(t, store.RedisOptions{})
	ctx := t.Context()
	if _, _, ok, err := s.SharedToken(ctx); err != nil || ok {
		t.Fatalf("SharedToken of an empty store = %v, %v", ok, err)
	}
	if err := s.PutSharedToken(ctx, "TOKEN-1", time.Hour); err != nil {
		t.Fatal(err)
	}
	tok, ttl, ok, err := s.SharedToken(ctx)
	if err != nil || !ok || tok != "TOKEN-1" || ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("SharedToken = %q, %v, %v, %v; want TOKEN-1 for about an hour", tok, ttl, ok, err)
	}
	if err := s.DropSharedToken(ctx, "TOKEN-0"); err != nil {
		t.Fatal(err)
	}
	if tok, _, ok, _ := s.SharedToken(ctx); !ok || tok != "TOKEN-1" {
		t.Fatalf("dropping an old token dropped the current one: %q, %v", tok, ok)
	}
	if err := s.DropSharedToken(ctx, "TOKEN-1"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := s.SharedToken(ctx); ok {
		t.Fatal("the dropped token is still kept")
	}

	unlock, ok, err := s.LockTokenFetch(ctx, time.Minute)
	if err != nil || !ok {
		t.Fatalf("LockTokenFetch = %v, %v", ok, err)
	}
	if _, ok, _ := s.LockTokenFetch(ctx, time.Minute); ok {
		t.Fatal("a second lock was granted while the first was held")
	}
	unlock()
	unlock2, ok, err := s.LockTokenFetch(ctx, 100*time.Millisecond)
	if err != nil || !ok {
		t.Fatalf("LockTokenFetch after unlock = %v, %v", ok, err)
	}
	unlock() // the first holder's unlock must not free the second's lock
	if _, ok, _ := s.LockTokenFetch(ctx, time.Minute); ok {
		t.Fatal("a stale unlock freed another holder's lock")
	}
	defer unlock2()
	waitUntil(t, "the lock to expire", func() bool {
		un, ok, _ := s.LockTokenFetch(ctx, time.Minute)
		if ok {
			un()
		}
		return ok
	})
}

// Ended items, marks and keys go from Redis by themselves: its memory
// does not grow with what was ever accepted.
func TestRedisEndedItemsExpire(t *testing.T) {
	t.Parallel()
	u := storetest.RedisURL(t)
	prefix := storetest.RedisPrefix(t)
	s := openRedis(t, store.RedisOptions{URL: u + "?prefix=" + prefix, Retention: 100 * time.Millisecond})
	now := time.Now()
	if _, err := s.Accept(t.Context(), &store.Batch{Now: now, Dedupe: "m1", DedupeTTL: 100 * time.Millisecond,
		IdemKey: "k1", IdemFingerprint: []byte("fp"), IdemTTL: 100 * time.Millisecond,
		Items: []store.NewItem{item("a", "u1", nil)}, SetState: &store.UserState{OpenID: "u1", Name: "awaiting", TTL: 100 * time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	cs, _, err := s.Claim(t.Context(), now, 1, time.Minute)
	if err != nil || len(cs) != 1 {
		t.Fatalf("Claim = %v, %v", cs, err)
	}
	if _, err := s.Complete(t.Context(), cs[0], store.Final{Now: now, Delivered: true, Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(mustParse(t, u))
	defer rdb.Close()
	waitUntil(t, "every key of the prefix but the health probe's to expire", func() bool {
		keys, err := rdb.Keys(t.Context(), prefix+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		left := slices.DeleteFunc(keys, func(k string) bool { return k == prefix+"health" || k == prefix+"seq" || k == prefix+"pending" })
		return len(left) == 0
	})
}

func mustParse(t *testing.T, u string) *redis.Options {
	t.Helper()
	o, err := redis.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
