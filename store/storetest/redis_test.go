package storetest_test

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wxreply/wxreply/store/storetest"
)

// Tests of the Redis helpers themselves.

func client(t *testing.T, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRedisServerKillKeepsAppendOnly(t *testing.T) {
	s := storetest.StartRedis(t, storetest.RedisServerOptions{})
	ctx := t.Context()
	if err := client(t, s.URL()).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	s.Kill()
	if c, err := net.Dial("tcp", s.Addr()); err == nil {
		c.Close()
		t.Fatal("Redis still listening after Kill")
	}
	s.Start()
	got, err := client(t, s.URL()).Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("GET after Kill and Start = %q, %v; want v", got, err)
	}
}

func TestRedisServerStopKeepsAppendOnly(t *testing.T) {
	s := storetest.StartRedis(t, storetest.RedisServerOptions{})
	ctx := t.Context()
	if err := client(t, s.URL()).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	s.Stop()
	s.Stop() // a second Stop does nothing
	s.Start()
	got, err := client(t, s.URL()).Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("GET after Stop and Start = %q, %v; want v", got, err)
	}
}

func TestRedisServerNoAppendOnlyForgets(t *testing.T) {
	s := storetest.StartRedis(t, storetest.RedisServerOptions{NoAppendOnly: true})
	ctx := t.Context()
	if err := client(t, s.URL()).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	s.Kill()
	s.Start()
	got, err := client(t, s.URL()).Get(ctx, "k").Result()
	if !errors.Is(err, redis.Nil) {
		t.Fatalf("GET after Kill and Start without AOF = %q, %v; want nothing", got, err)
	}
}

func TestRedisServerPassword(t *testing.T) {
	s := storetest.StartRedis(t, storetest.RedisServerOptions{Password: "p@ss word/1"})
	ctx := t.Context()
	if err := client(t, s.URL()).Ping(ctx).Err(); err != nil {
		t.Fatalf("PING with URL %s: %v", s.URL(), err)
	}
	noAuth := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer noAuth.Close()
	if err := noAuth.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("PING without password: %v, want NOAUTH", err)
	}
}

func TestRedisURL(t *testing.T) {
	url := storetest.RedisURL(t)
	if err := client(t, url).Ping(t.Context()).Err(); err != nil {
		t.Fatalf("PING %s: %v", url, err)
	}
	if again := storetest.RedisURL(t); again != url {
		t.Fatalf("second RedisURL = %s, want %s", again, url)
	}
}

func TestRedisPrefix(t *testing.T) {
	a, b := storetest.RedisPrefix(t), storetest.RedisPrefix(t)
	if a == b {
		t.Fatalf("two RedisPrefix calls gave %q", a)
	}
	for _, p := range []string{a, b} {
		if !strings.HasPrefix(p, "test:TestRedisPrefix:") || !strings.HasSuffix(p, ":") || strings.ContainsAny(p, "*?[]\\ ") {
			t.Errorf("RedisPrefix = %q", p)
		}
	}
	t.Run("sub test/with *odd* [name]", func(t *testing.T) {
		p := storetest.RedisPrefix(t)
		if strings.ContainsAny(p, "*?[]\\ ") {
			t.Errorf("RedisPrefix = %q, has glob characters or spaces", p)
		}
	})
}

func TestCleanupRedisPrefix(t *testing.T) {
	url := storetest.RedisURL(t)
	c := client(t, url)
	ctx := t.Context()
	keep := storetest.RedisPrefix(t)
	storetest.CleanupRedisPrefix(t, url, keep) // runs after the check below
	if err := c.Set(ctx, keep+"k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var gone string
	t.Run("sub", func(t *testing.T) {
		gone = storetest.RedisPrefix(t)
		storetest.CleanupRedisPrefix(t, url, gone)
		for i := range 2500 { // more than one SCAN and DEL batch
			if err := c.Set(ctx, fmt.Sprintf("%sk%d", gone, i), "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	})
	n, err := c.Exists(ctx, gone+"k0", gone+"k2499").Result()
	if err != nil || n != 0 {
		t.Errorf("keys under %q after the subtest's cleanup: %d, %v; want 0", gone, n, err)
	}
	if n, err := c.Exists(ctx, keep+"k").Result(); err != nil || n != 1 {
		t.Errorf("key under another prefix: %d, %v; want kept", n, err)
	}
}

// TestRedisMissing checks that without redis-server a test skips, and
// under CI=true fails.
func TestRedisMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		r := &recorder{TB: t}
		r.run(func() { storetest.StartRedis(r, storetest.RedisServerOptions{}) })
		want := "skipped"
		if ci == "true" {
			want = "failed"
		}
		if r.how != want || !strings.Contains(r.msg, "apt-get install redis-server") ||
			!strings.Contains(r.msg, storetest.RedisEnv) {
			t.Errorf("CI=%q: test %s: %q; want %s, saying how to install", ci, r.how, r.msg, want)
		}
	}
}

// recorder is a testing.TB whose Fatal and Skip are recorded instead.
type recorder struct {
	testing.TB
	how, msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.how, r.msg = "failed", fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatal(args ...any) {
	r.how, r.msg = "failed", fmt.Sprint(args...)
	runtime.Goexit()
}

func (r *recorder) Skip(args ...any) {
	r.how, r.msg = "skipped", fmt.Sprint(args...)
	runtime.Goexit()
}

func (r *recorder) Skipf(format string, args ...any) { r.Skip(fmt.Sprintf(format, args...)) }

// run runs f in a goroutine of its own, which Fatal and Skip end.
func (r *recorder) run(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		panic("recorder: f did not return")
	}
}
