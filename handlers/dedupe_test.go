package handlers

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// TestInflightForgetsFinished: the map holds only the callbacks under
// way. A finished key leaves it at once, so a flood of distinct messages
// takes no memory once answered, and a key seen again afterwards is a
// first copy again (the store, not the map, recognises late retries).
func TestInflightForgetsFinished(t *testing.T) {
	f := newInflight()
	for i := range 1000 {
		key := "msg:" + strconv.Itoa(i)
		a, first := f.begin(key)
		if !first {
			t.Fatalf("key %d taken for a retry", i)
		}
		var reply []byte
		if i%2 == 0 {
			reply = []byte("<xml/>")
		}
		f.finish(key, a, reply, nil)
	}
	f.mu.Lock()
	held := len(f.m)
	f.mu.Unlock()
	if held != 0 {
		t.Fatalf("%d finished callbacks still held", held)
	}
	if _, first := f.begin("msg:0"); !first {
		t.Fatal("a finished key is still taken for a retry")
	}
}

// TestInflightOneFirstCopy: of many copies arriving while the first is
// under way, exactly one is handled and the others get its reply.
func TestInflightOneFirstCopy(t *testing.T) {
	f := newInflight()
	var firsts atomic.Int32
	var wg, begun sync.WaitGroup
	replies := make([]string, 50)
	begun.Add(len(replies))
	for i := range replies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, first := f.begin("evt:o:1:subscribe")
			begun.Done()
			if first {
				firsts.Add(1)
				begun.Wait() // every copy has arrived while this one is under way
				f.finish("evt:o:1:subscribe", a, []byte("reply"), nil)
			}
			r, err, ok := a.wait()
			if ok && err == nil {
				replies[i] = string(r)
			}
		}()
	}
	wg.Wait()
	if firsts.Load() != 1 {
		t.Fatalf("%d copies handled, want 1", firsts.Load())
	}
	for i, r := range replies {
		if r != "reply" {
			t.Errorf("copy %d got %q", i, r)
		}
	}
}

// TestInflightSharesTheOutcome: retries waiting on a first copy get its
// outcome, whatever it was: a success (no reply), a passive reply, or the
// error that kept it from being recorded.
func TestInflightSharesTheOutcome(t *testing.T) {
	failed := errors.New("store unavailable")
	for _, tc := range []struct {
		name  string
		reply []byte
		err   error
	}{
		{"success", nil, nil},
		{"passive reply", []byte("<xml>hi</xml>"), nil},
		{"error", nil, failed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newInflight()
			a, first := f.begin("msg:1")
			if !first {
				t.Fatal("first copy taken for a retry")
			}
			type outcome struct {
				reply []byte
				err   error
				ok    bool
			}
			begun := make(chan struct{})
			got := make(chan outcome, 1)
			go func() {
				b, first := f.begin("msg:1")
				close(begun)
				if first {
					got <- outcome{reply: []byte("handled twice")}
					return
				}
				r, err, ok := b.wait()
				got <- outcome{r, err, ok}
			}()
			<-begun // the retry holds the first copy's answer
			f.finish("msg:1", a, tc.reply, tc.err)
			o := <-got
			if !o.ok || string(o.reply) != string(tc.reply) || (tc.reply == nil) != (o.reply == nil) || !errors.Is(o.err, tc.err) || (tc.err == nil) != (o.err == nil) {
				t.Fatalf("retry got %q, %v, ok %v; want %q, %v", o.reply, o.err, o.ok, tc.reply, tc.err)
			}
			// Once finished, the key is gone: a later copy is handled
			// (and recognised by the store, which the Responder asks).
			if _, first := f.begin("msg:1"); !first {
				t.Fatal("a copy after the first one finished is taken for a retry")
			}
		})
	}
}
