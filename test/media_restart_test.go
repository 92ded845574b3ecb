package test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// TestMediaUploadKeptAcrossRestart: a rule's image file is uploaded once,
// and the next server on the same store sends it by the media_id it
// recorded rather than uploading it again; a file changed on disk is
// uploaded anew.
func TestMediaUploadKeptAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "pic.png")
	if err := os.WriteFile(img, []byte("\x89PNG\r\n\x1a\n fake png"), 0o644); err != nil {
		t.Fatal(err)
	}
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte("rules:\n  - name: pic\n    match: {text: {equals: [pic]}}\n    reply:\n      - image: {file: "+img+"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	api := wechattest.NewServer(wechattest.WithCredentials(testAppID, testAppSecret))
	defer api.Close()
	uploads := func() int { return len(api.Accepted(wechat.PathMediaUpload)) }
	storeDir := filepath.Join(dir, "data")
	msgID := int64(970000)
	send := func(h *harness, want int) {
		t.Helper()
		msgID++
		if code, body := h.post(t, text("oMEDIA_user_1", "pic", msgID)); code != 200 {
			t.Fatalf("callback answered %d %q", code, body)
		}
		got := h.waitDelivered(t, want)
		if m := got[len(got)-1].Custom; m == nil || m.Image == nil || m.Image.MediaID == "" {
			t.Fatalf("the reply was not an image with a media_id: %+v", got[len(got)-1])
		}
	}

	h1 := newHarness(t, harnessOptions{rules: rules, store: storeDir, api: api})
	send(h1, 1)
	if n := uploads(); n != 1 {
		t.Fatalf("%d uploads for the first image reply, want 1", n)
	}
	if err := h1.stop(); err != nil {
		t.Fatal(err)
	}

	h2 := newHarness(t, harnessOptions{rules: rules, store: storeDir, api: api})
	send(h2, 2)
	if n := uploads(); n != 1 {
		t.Errorf("%d uploads after the restart, want still 1: the store's media_id was not used", n)
	}
	if err := os.WriteFile(img, []byte("\x89PNG\r\n\x1a\n another fake png, longer"), 0o644); err != nil {
		t.Fatal(err)
	}
	send(h2, 3)
	if n := uploads(); n != 2 {
		t.Errorf("%d uploads after the file changed, want 2", n)
	}
}
