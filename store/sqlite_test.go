package store_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/store/storetest"
)

var quiet = slog.New(slog.DiscardHandler)

func openSQLite(t *testing.T, o store.SQLiteOptions) *store.SQLite {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quiet
	}
	s, err := store.OpenSQLite(o)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSQLiteMemory(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return openSQLite(t, store.SQLiteOptions{}) })
}

func TestSQLiteDir(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) store.Store { return openSQLite(t, store.SQLiteOptions{Dir: t.TempDir()}) })
}

func TestOpen(t *testing.T) {
	for _, spec := range []string{store.Memory, t.TempDir()} {
		s, err := store.Open(spec, store.Options{Logger: quiet})
		if err != nil {
			t.Fatalf("Open(%q): %v", spec, err)
		}
		if _, ok := s.(*store.SQLite); !ok {
			t.Errorf("Open(%q) = %T, want *store.SQLite", spec, s)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	if _, err := store.Open("", store.Options{}); err == nil {
		t.Error("Open(\"\") succeeded")
	}
	// A Redis that does not answer is no reason to stop: the store is
	// unhealthy (callbacks 503) until it answers. Neither says the password.
	s, err := store.Open("redis://user:s3cret@127.0.0.1:1/0", store.Options{Logger: quiet})
	if err != nil {
		t.Fatalf("Open(an unreachable Redis): %v", err)
	}
	if err := s.Healthy(); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Healthy of an unreachable Redis = %v, want an error without the password", err)
	}
	s.Close()
	_, err = store.Open("redis://user:s3cret@127.0.0.1:notaport/0", store.Options{})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Open(a bad redis URL) = %v, want an error without the password", err)
	}
}

var base = time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)

func item(id, openid string, payload []byte) store.NewItem {
	if payload == nil {
		payload = []byte("payload " + id)
	}
	return store.NewItem{ID: id, OpenID: openid, MsgType: "text", Payload: payload}
}

func accept(t *testing.T, s store.Store, now time.Time, items ...store.NewItem) {
	t.Helper()
	if _, err := s.Accept(t.Context(), &store.Batch{Now: now, Items: items}); err != nil {
		t.Fatalf("Accept: %v", err)
	}
}

func claim(t *testing.T, s store.Store, now time.Time) []store.Claim {
	t.Helper()
	cs, _, err := s.Claim(t.Context(), now, 100, time.Hour)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return cs
}

func claimIDs(cs []store.Claim) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Item.ID)
	}
	slices.Sort(out)
	return out
}

func complete(t *testing.T, s store.Store, c store.Claim, now time.Time) {
	t.Helper()
	if _, err := s.Complete(t.Context(), c, store.Final{Now: now, Delivered: true, Attempts: 1}); err != nil {
		t.Fatalf("Complete %s: %v", c.Item.ID, err)
	}
}

func pending(t *testing.T, s store.Store) int {
	t.Helper()
	n, err := s.Pending(t.Context())
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	return n
}

// TestReopen: what was accepted is there after a restart, in order; the
// leases held at the close are free, the retries still parked.
func TestReopen(t *testing.T) {
	// One start before the wall clock, one after: the times passed in
	// decide, not the clock.
	for _, base := range []time.Time{base, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)} {
		t.Run(base.Format("2006"), func(t *testing.T) {
			dir := t.TempDir()
			s := openSQLite(t, store.SQLiteOptions{Dir: dir})
			accept(t, s, base, item("a", "u1", nil), item("b", "u1", nil))
			accept(t, s, base, item("x", "u2", nil), item("y", "u2", nil))
			accept(t, s, base.Add(time.Millisecond), item("c", "u1", nil))
			cs := claim(t, s, base)
			if got := claimIDs(cs); !slices.Equal(got, []string{"a", "x"}) {
				t.Fatalf("Claim = %v, want [a x]", got)
			}
			retryAt := base.Add(10 * time.Minute)
			for _, c := range cs {
				if c.Item.ID == "x" {
					if err := s.Retry(t.Context(), c, store.Retry{Now: base, At: retryAt, Attempts: 1, LastError: "busy"}); err != nil {
						t.Fatal(err)
					}
				}
			}
			// a is still leased, for an hour, when the store closes.
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}

			s = openSQLite(t, store.SQLiteOptions{Dir: dir})
			if n := pending(t, s); n != 5 {
				t.Fatalf("Pending after reopen = %d, want 5", n)
			}
			now := base.Add(time.Second)
			var order []string
			for range 3 {
				cs := claim(t, s, now)
				if len(cs) != 1 {
					t.Fatalf("Claim after reopen = %v, want u1's next item alone (x is parked)", claimIDs(cs))
				}
				order = append(order, cs[0].Item.ID)
				complete(t, s, cs[0], now)
			}
			if !slices.Equal(order, []string{"a", "b", "c"}) {
				t.Errorf("u1's items after reopen came as %v, want [a b c]", order)
			}
			if cs := claim(t, s, retryAt.Add(-time.Millisecond)); len(cs) != 0 {
				t.Fatalf("Claim before the retry = %v, want nothing", claimIDs(cs))
			}
			cs = claim(t, s, retryAt)
			if len(cs) != 1 || cs[0].Item.ID != "x" || cs[0].Item.Attempts != 1 || cs[0].Item.LastError != "busy" {
				t.Fatalf("Claim at the retry = %+v, want x with its attempt", cs)
			}
		})
	}
}

// TestCloseWhileBusy: calls racing Close end, with ErrClosed or done.
func TestCloseWhileBusy(t *testing.T) {
	s := openSQLite(t, store.SQLiteOptions{})
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 32 {
		wg.Go(func() {
			for i := 0; ; i++ {
				_, err := s.Accept(context.Background(), &store.Batch{Now: base,
					Items: []store.NewItem{item(fmt.Sprintf("g%d-%d", g, i), fmt.Sprintf("u%d", g), nil)}})
				if err == nil {
					_, err = s.Pending(context.Background())
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	// Let the calls get going: wait for some to commit.
	for s.Stats().Ops < 200 {
		if _, err := s.Pending(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("calls made while the store closed never returned")
	}
	close(errs)
	for err := range errs {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("call during Close: %v, want ErrClosed", err)
		}
	}
}

// TestDuplicateID: an item ID used twice fails that Accept alone; its
// neighbours in the same transaction are recorded, and the store stays
// healthy (the caller erred, not the store).
func TestDuplicateID(t *testing.T) {
	s := openSQLite(t, store.SQLiteOptions{})
	accept(t, s, base, item("a", "u1", nil))
	var wg sync.WaitGroup
	errs := make([]error, 64)
	for i := range errs {
		wg.Go(func() {
			id := fmt.Sprint("n", i)
			if i%16 == 0 {
				id = "a"
			}
			_, errs[i] = s.Accept(t.Context(), &store.Batch{Now: base, Touch: fmt.Sprint("t", i),
				Items: []store.NewItem{item(id, fmt.Sprint("u", i), nil)}})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if (err != nil) != (i%16 == 0) {
			t.Errorf("Accept %d: %v", i, err)
		}
		w, werr := s.Window(t.Context(), fmt.Sprint("t", i))
		if werr != nil || w.Known != (i%16 != 0) {
			t.Errorf("Window(t%d) = %+v, %v: the failed batch's touch must be rolled back with it, the others kept", i, w, werr)
		}
	}
	if n := pending(t, s); n != 1+60 {
		t.Errorf("Pending = %d, want 61", n)
	}
	if err := s.Healthy(); err != nil {
		t.Errorf("Healthy after a duplicate ID: %v", err)
	}
	if st := s.Stats(); st.Commits == 0 || st.Ops < 65 {
		t.Errorf("Stats = %+v, want commits and at least 65 ops", st)
	}
}

// TestDirName: a directory named with URI characters holds the database
// itself, and keeps it across a reopen.
func TestDirName(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wx reply?mode=memory#1%41")
	s := openSQLite(t, store.SQLiteOptions{Dir: dir})
	accept(t, s, base, item("a", "u1", nil))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "wxreply.db")); err != nil {
		t.Fatalf("the database is not in the directory: %v", err)
	}
	s = openSQLite(t, store.SQLiteOptions{Dir: dir})
	if st, ok, err := s.Status(t.Context(), "a"); err != nil || !ok {
		t.Fatalf("Status(a) after reopen = %+v, %v, %v", st, ok, err)
	}

	// A relative directory, as WXREPLY_STORE=data names one.
	t.Chdir(t.TempDir())
	s = openSQLite(t, store.SQLiteOptions{Dir: "data"})
	accept(t, s, base, item("a", "u1", nil))
	if _, err := os.Stat(filepath.Join("data", "wxreply.db")); err != nil {
		t.Fatalf("the database is not in the relative directory: %v", err)
	}
}
