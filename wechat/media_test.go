package wechat_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/wxreply/wxreply/wechat"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A file is uploaded once, however many callers ask at once, and again
// only when it changed or was evicted.
func TestUploadMediaIsCached(t *testing.T) {
	srv := fakeAPI(t)
	c := apiClient(srv, nil, nil)
	path := writeFile(t, "a.jpg", "\xff\xd8\xff fake jpeg")
	ups := func() int { return len(srv.Accepted(wechat.PathMediaUpload)) }

	ids := make([]string, 10)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := c.UploadMedia(context.Background(), wechat.MediaImage, path)
			if err != nil {
				t.Error(err)
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id == "" || id != ids[0] {
			t.Fatalf("ids = %v", ids)
		}
	}
	up := srv.Accepted(wechat.PathMediaUpload)
	if len(up) != 1 || up[0].MediaID != ids[0] || up[0].FileName != "a.jpg" || up[0].MediaType != "image" || up[0].FileSize != len("\xff\xd8\xff fake jpeg") {
		t.Fatalf("uploads = %+v", up)
	}

	steps := []struct {
		name    string
		do      func()
		uploads int
	}{
		{"unchanged file", func() {}, 1},
		{"evicted", func() { c.EvictMedia(wechat.MediaImage, path) }, 2},
		{"file rewritten", func() {
			_ = os.WriteFile(path, []byte("a longer fake jpeg"), 0o600)
		}, 3},
		{"other type of the same file", func() {}, 4},
	}
	for i, st := range steps {
		st.do()
		typ := wechat.MediaImage
		if i == 3 {
			typ = wechat.MediaThumb
		}
		if _, err := c.UploadMedia(context.Background(), typ, path); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := ups(); got != st.uploads {
			t.Errorf("%s: %d uploads, want %d", st.name, got, st.uploads)
		}
	}
}

func TestUploadMediaErrors(t *testing.T) {
	srv := fakeAPI(t)
	c := apiClient(srv, nil, nil)
	tests := []struct {
		name, typ, path string
	}{
		{"missing file", wechat.MediaImage, filepath.Join(t.TempDir(), "none.jpg")},
		{"directory", wechat.MediaImage, t.TempDir()},
		{"unknown type", "picture", writeFile(t, "a.jpg", "x")},
		{"thumb over 64 KB", wechat.MediaThumb, writeFile(t, "big.jpg", strings.Repeat("x", 64<<10+1))},
		{"voice over 2 MB", wechat.MediaVoice, writeFile(t, "big.mp3", strings.Repeat("x", 2<<20+1))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.UploadMedia(context.Background(), tt.typ, tt.path)
			if !errors.Is(err, wechat.ErrMediaFile) || wechat.Retryable(err) {
				t.Errorf("err = %v, want a final ErrMediaFile", err)
			}
		})
	}
	if n := len(srv.Received()); n != 0 {
		t.Errorf("%d calls for files WeChat would refuse", n)
	}
}
