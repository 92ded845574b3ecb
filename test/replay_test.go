package test

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/wxreply/wxreply/wechat"
)

// TestReplayCaptures posts every captured message and event, in plaintext,
// safe and compatible mode, through the real server, and checks that the
// handlers parsed exactly what the plaintext capture holds and answered as
// the rules say.
func TestReplayCaptures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "plain", "*.xml"))
	if err != nil || len(files) < 25 {
		t.Fatalf("found %d captures (%v), want one per message and event type", len(files), err)
	}
	for _, mode := range []string{"plain", "safe", "compat"} {
		// A server per mode: a mode's copy repeats the plain one, and one
		// server would rightly drop it as a retry.
		h := newHarness(t, harnessOptions{})
		for _, f := range files {
			name := filepath.Base(f)
			t.Run(mode+"/"+name, func(t *testing.T) {
				want, err := wechat.ParseMessage(capture(t, "plain", name))
				if err != nil {
					t.Fatal(err)
				}
				before := h.seen.count()
				code, body := h.post(t, capture(t, mode, name))
				if code != 200 {
					t.Fatalf("status %d: %s", code, body)
				}
				if h.seen.count() != before+1 {
					t.Fatal("the server did not hand the capture to the responder")
				}
				got := *h.seen.last()
				got.Encrypt, got.Unknown = "", nil
				wantV := *want
				wantV.Unknown = nil
				if !reflect.DeepEqual(got, wantV) {
					t.Errorf("parsed\n%+v\nwant\n%+v", got, wantV)
				}
				if body != "success" && mode != "plain" && !strings.Contains(body, "<Encrypt>") {
					t.Errorf("a reply to an encrypted message went out in plaintext: %s", body)
				}
				if body != "success" && !strings.Contains(body, "<xml>") {
					t.Errorf("answer is neither success nor a passive reply: %q", body)
				}
			})
		}
	}
}
