package test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestStoreFullAnswers503ThenRecovers puts the store on a small tmpfs
// and fills it, as a full disk would: callbacks are answered 503 (so that
// WeChat retries) and /healthz 503 while it is full, never 200 for a
// reply that was not recorded; once space is freed the server is healthy
// again by itself, and every reply it acknowledged is delivered.
func TestStoreFullAnswers503ThenRecovers(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	wx := newFakeWeChat(t, time.Millisecond)
	dir, rules := filepath.Join(mnt, "store"), writeEchoRules(t)
	p := startWxreply(t, wx.env(dir, rules))

	var acked []string
	post := func(i int) int {
		content := fmt.Sprintf("m-full-%06d", i)
		code, _ := postCallback(t, p.base, text(streamOpenID(i%7), content, 9_400_000_000+int64(i)))
		if code == 200 {
			acked = append(acked, "r "+content)
		}
		return code
	}
	for i := range 20 {
		if code := post(i); code != 200 {
			t.Fatalf("callback %d answered %d before the disk was full", i, code)
		}
	}
	filler := filepath.Join(mnt, "filler")
	fill(t, filler)

	// Commits may still fit in what the WAL had already allocated: post
	// until one does not.
	n, refused := 20, false
	for ; n < 5000 && !refused; n++ {
		switch code := post(n); code {
		case 200:
		case 503:
			refused = true
		default:
			t.Fatalf("callback %d answered %d on a full disk, want 200 or 503", n, code)
		}
	}
	if !refused {
		t.Fatal("5,000 callbacks on a full disk and none answered 503")
	}
	if code := getStatus(t, p.base+"/healthz"); code != 503 {
		t.Errorf("/healthz answered %d on a full disk, want 503", code)
	}
	p.waitLog(t, "store cannot be written") // logs are flushed every 100 ms

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for getStatus(t, p.base+"/healthz") != 200 {
		if time.Now().After(deadline) {
			t.Fatal("/healthz still unhealthy 15 s after space was freed")
		}
		time.Sleep(50 * time.Millisecond) // polling, as a load balancer does
	}
	for i := n; i < n+20; i++ {
		if code := post(i); code != 200 {
			t.Fatalf("callback answered %d after space was freed", code)
		}
	}
	wx.waitReplies(t, acked, 30*time.Second)
}

// fill writes path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{0xAB}, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}
