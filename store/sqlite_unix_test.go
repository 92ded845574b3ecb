//go:build unix

package store_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/store"
)

// TestDirInUse: a second store on an open directory fails at once.
func TestDirInUse(t *testing.T) {
	dir := t.TempDir()
	s := openSQLite(t, store.SQLiteOptions{Dir: dir})
	_, err := store.OpenSQLite(store.SQLiteOptions{Dir: dir, Logger: quiet})
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second OpenSQLite on %s = %v, want an error saying it is in use", dir, err)
	}
	// Closing frees it.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	openSQLite(t, store.SQLiteOptions{Dir: dir})
}

const helperDirEnv = "WXREPLY_STORE_TEST_HELPER_DIR"

// The child of TestKilled: four writers accept items into the directory
// and print each ID once Accept returned, until the parent kills the
// process (or closes its stdin, should the parent die first).
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		t.Skip("the child process of TestKilled")
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(3)
	}()
	s, err := store.OpenSQLite(store.SQLiteOptions{Dir: dir, Logger: quiet})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	var out sync.Mutex
	for w := range 4 {
		go func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%d-%07d", w, i)
				_, err := s.Accept(t.Context(), &store.Batch{Now: base.Add(time.Duration(i) * time.Millisecond),
					Items: []store.NewItem{item(id, fmt.Sprint("user-", w), nil)}})
				out.Lock()
				if err != nil {
					fmt.Println("error", err)
					os.Exit(2)
				}
				fmt.Println("accepted", id)
				out.Unlock()
			}
		}()
	}
	select {}
}

// TestKilled: every Accept that returned before a kill -9 is in the
// store after it, in its user's order.
func TestKilled(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	const want = 2000
	var printed []string
	lines := bufio.NewScanner(stdout)
	for len(printed) < want && lines.Scan() {
		id, ok := strings.CutPrefix(lines.Text(), "accepted ")
		if !ok {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("child: %s", lines.Text())
		}
		printed = append(printed, id)
	}
	// SIGKILL, while the writers are in the middle of their Accepts.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(printed) < want {
		t.Fatalf("the child printed %d IDs before it ended, want %d", len(printed), want)
	}

	// The kernel released the dead child's lock.
	s := openSQLite(t, store.SQLiteOptions{Dir: dir})
	for _, id := range printed {
		st, ok, err := s.Status(t.Context(), id)
		if err != nil || !ok || st.State != store.StateQueued {
			t.Fatalf("Status(%s) after kill -9 = %+v, %v, %v; want queued", id, st, ok, err)
		}
	}
	n := pending(t, s)
	if n < len(printed) {
		t.Fatalf("Pending = %d, want at least the %d printed", n, len(printed))
	}
	t.Logf("%d IDs printed before the kill, %d items in the store after it", len(printed), n)

	// Each writer's items come out in the order it accepted them.
	got := map[string][]string{}
	for {
		cs, _, err := s.Claim(t.Context(), base.Add(time.Hour), 100, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			break
		}
		for _, c := range cs {
			got[c.Item.OpenID] = append(got[c.Item.OpenID], c.Item.ID)
			complete(t, s, c, base.Add(time.Hour))
		}
	}
	total := 0
	for user, ids := range got {
		if !slices.IsSorted(ids) {
			t.Errorf("%s's items came out of order", user)
		}
		total += len(ids)
	}
	if total != n {
		t.Errorf("claimed %d items, want the %d pending", total, n)
	}
}
