package wechat

import (
	"testing"
	"testing/synctest"
	"time"
)

// The cache gives back what was set, typed, until it expires, and keeps
// nothing expired past the next Set.
func TestTTLCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newTTLCache[string, mediaEntry]()
		if _, ok := c.Get("a"); ok {
			t.Fatal("an empty cache has a")
		}
		e := mediaEntry{id: "M1", size: 3}
		c.Set("a", e, time.Minute)
		c.Set("b", mediaEntry{id: "M2"}, time.Hour)
		if got, ok := c.Get("a"); !ok || got != e {
			t.Fatalf("Get(a) = %+v, %v", got, ok)
		}
		time.Sleep(time.Minute + time.Second)
		if _, ok := c.Get("a"); ok {
			t.Error("a is given back after its ttl")
		}
		if got, ok := c.Get("b"); !ok || got.id != "M2" {
			t.Errorf("Get(b) = %+v, %v", got, ok)
		}
		if n := c.c.ItemCount(); n != 2 {
			t.Fatalf("%d entries before the next Set, want the expired one still there", n)
		}
		c.Set("c", mediaEntry{id: "M3"}, time.Hour)
		if n := c.c.ItemCount(); n != 2 {
			t.Errorf("%d entries after a Set, want the expired one dropped", n)
		}
		c.Delete("b")
		if _, ok := c.Get("b"); ok {
			t.Error("b is given back after Delete")
		}
		// go-cache reads a ttl of 0 as "never expires": the wrapper stores
		// nothing instead, and drops what was there.
		c.Set("c", mediaEntry{id: "M4"}, 0)
		c.Set("d", mediaEntry{id: "M5"}, -time.Second)
		for _, k := range []string{"c", "d"} {
			if got, ok := c.Get(k); ok {
				t.Errorf("Get(%s) = %+v after a Set with no ttl", k, got)
			}
		}
	})
}
