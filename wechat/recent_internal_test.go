package wechat

import (
	"fmt"
	"testing"
	"time"
)

func TestRecent(t *testing.T) {
	t0 := time.Now()
	tests := []struct {
		name string
		do   func(r *recent[int])
		at   time.Time
		want map[string]bool // key → still there
	}{
		{"within ttl", func(r *recent[int]) { r.set("a", 1, t0) }, t0.Add(time.Minute - 1), map[string]bool{"a": true}},
		{"at ttl", func(r *recent[int]) { r.set("a", 1, t0) }, t0.Add(time.Minute), map[string]bool{"a": false}},
		{"a new set renews", func(r *recent[int]) {
			r.set("a", 1, t0)
			r.set("a", 2, t0.Add(30*time.Second))
		}, t0.Add(time.Minute), map[string]bool{"a": true}},
		{"over max: the least recently set goes", func(r *recent[int]) {
			r.set("a", 1, t0)
			r.set("b", 1, t0)
			r.set("c", 1, t0)
			r.set("a", 2, t0) // a is newest now
			r.set("d", 1, t0)
		}, t0, map[string]bool{"a": true, "b": false, "c": true, "d": true}},
		{"set drops the expired", func(r *recent[int]) {
			r.set("a", 1, t0)
			r.set("b", 1, t0.Add(2*time.Minute))
		}, t0, map[string]bool{"a": false, "b": true}},
		{"take removes", func(r *recent[int]) {
			r.set("a", 1, t0)
			if v, ok := r.take("a", t0); !ok || v != 1 {
				panic(fmt.Sprint("take = ", v, ok))
			}
		}, t0, map[string]bool{"a": false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRecent[int](time.Minute, 3)
			tt.do(r)
			n := 0
			for k, want := range tt.want {
				if _, ok := r.get(k, tt.at); ok != want {
					t.Errorf("%s there = %v, want %v", k, ok, want)
				}
				if want {
					n++
				}
			}
			r.deleteExpired(tt.at)
			if r.len() != n || len(r.items) != n {
				t.Errorf("len = %d (map %d), want %d", r.len(), len(r.items), n)
			}
		})
	}
}
