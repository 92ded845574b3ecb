package test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/handlers"
	"github.com/wxreply/wxreply/server"
	"github.com/wxreply/wxreply/wechat"
)

// TestReplayCaptures posts every captured message and event, in plaintext,
// safe and compatible mode, through the real server, and checks that it
// answered as the rules say, and that the handlers parsed exactly what the
// plaintext capture holds.
//
// server.New builds its own Responder, so the parse is checked beside it:
// each capture is posted a second time to the same handlers (same token
// and key) with a Responder that records the message and hands it to a
// server.Responder over the real server's rules and outbox. That copy is
// a WeChat retry to the outbox, which records nothing for it.
func TestReplayCaptures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "plain", "*.xml"))
	if err != nil || len(files) < 25 {
		t.Fatalf("found %d captures (%v), want one per message and event type", len(files), err)
	}
	for _, mode := range []string{"plain", "safe", "compat"} {
		// A server per mode: a mode's copy repeats the plain one, and one
		// server would rightly drop it as a retry.
		h := newHarness(t, harnessOptions{safe: mode != "plain"})
		rec := newRecorder(t, h)
		for _, f := range files {
			name := filepath.Base(f)
			t.Run(mode+"/"+name, func(t *testing.T) {
				want, err := wechat.ParseMessage(capture(t, "plain", name))
				if err != nil {
					t.Fatal(err)
				}
				code, body := h.post(t, capture(t, mode, name))
				if code != 200 {
					t.Fatalf("status %d: %s", code, body)
				}
				if body != "success" && mode != "plain" && !strings.Contains(body, "<Encrypt>") {
					t.Errorf("a reply to an encrypted message went out in plaintext: %s", body)
				}
				if body != "success" && !strings.Contains(body, "<xml>") {
					t.Errorf("answer is neither success nor a passive reply: %q", body)
				}

				before, accepted := rec.count(), h.outbox().Stats().Accepted
				code, again := postCallback(t, rec.srv.URL, capture(t, mode, name))
				if code != 200 {
					t.Fatalf("second copy: status %d: %s", code, again)
				}
				if (again == "success") != (body == "success") {
					t.Errorf("the retry was answered %q, the first copy %q", again, body)
				}
				if rec.count() != before+1 {
					t.Fatal("the server did not hand the capture to the responder")
				}
				if n := h.outbox().Stats().Accepted; n != accepted {
					t.Errorf("the second copy recorded %d more messages, want none", n-accepted)
				}
				got := *rec.last()
				got.Encrypt, got.Unknown = "", nil
				wantV := *want
				wantV.Unknown = nil
				if !reflect.DeepEqual(got, wantV) {
					t.Errorf("parsed\n%+v\nwant\n%+v", got, wantV)
				}
			})
		}
		h.idle(t)
	}
}

// recorder is the handlers of h's account with a Responder that records
// each parsed message before the real one handles it.
type recorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	msgs []*wechat.Message
}

func newRecorder(t *testing.T, h *harness) *recorder {
	t.Helper()
	r := &recorder{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	next := &server.Responder{Rules: h.srv.Rules(), Outbox: h.outbox(), Logger: log, Now: time.Now}
	r.srv = httptest.NewServer(handlers.New(handlers.Config{
		Token:     testToken,
		Cipher:    h.cipher,
		Responder: recordingResponder{r, next},
		Logger:    log,
	}))
	t.Cleanup(r.srv.Close)
	return r
}

type recordingResponder struct {
	r    *recorder
	next handlers.Responder
}

func (rr recordingResponder) Respond(ctx context.Context, m *wechat.Message) ([]byte, error) {
	rr.r.mu.Lock()
	rr.r.msgs = append(rr.r.msgs, m)
	rr.r.mu.Unlock()
	return rr.next.Respond(ctx, m)
}

func (r *recorder) last() *wechat.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.msgs) == 0 {
		return nil
	}
	return r.msgs[len(r.msgs)-1]
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}
