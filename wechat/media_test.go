package wechat_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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

// The sender uploads files named in messages, fills the media_id in on a
// copy, and survives WeChat forgetting the media (40007) with one fresh
// upload.
func TestSenderUploadsMediaFiles(t *testing.T) {
	img := writeFile(t, "card.png", "\x89PNG fake")
	vid := writeFile(t, "clip.mp4", "fake mp4")
	thumb := writeFile(t, "thumb.jpg", "fake thumb")
	tests := []struct {
		name     string
		msg      func() *wechat.CustomMessage
		mediaID  func(*wechat.CustomMessage) []string
		uploads  []string // media types uploaded
		typingOn bool
	}{
		{"image", func() *wechat.CustomMessage {
			return &wechat.CustomMessage{ToUser: "u", MsgType: "image", Image: &wechat.Media{File: img}}
		}, func(m *wechat.CustomMessage) []string { return []string{m.Image.MediaID} }, []string{"image"}, false},
		{"video with thumb", func() *wechat.CustomMessage {
			return &wechat.CustomMessage{ToUser: "u", MsgType: "video", Video: &wechat.Video{File: vid, ThumbFile: thumb, Title: "t"}}
		}, func(m *wechat.CustomMessage) []string { return []string{m.Video.MediaID, m.Video.ThumbMediaID} }, []string{"video", "thumb"}, false},
		{"music thumb", func() *wechat.CustomMessage {
			return &wechat.CustomMessage{ToUser: "u", MsgType: "music", Music: &wechat.Music{MusicURL: "https://m/a", HQMusicURL: "https://m/b", ThumbFile: thumb}}
		}, func(m *wechat.CustomMessage) []string { return []string{m.Music.ThumbMediaID} }, []string{"thumb"}, false},
		{"mini program card, typing", func() *wechat.CustomMessage {
			return &wechat.CustomMessage{ToUser: "u", MsgType: "miniprogrampage", MiniProgramPage: &wechat.MiniProgramPage{Title: "t", AppID: "wxa", PagePath: "p", ThumbFile: img}}
		}, func(m *wechat.CustomMessage) []string { return []string{m.MiniProgramPage.ThumbMediaID} }, []string{"image"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeAPI(t)
			s, res := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil), Typing: tt.typingOn})
			first := tt.msg()
			if _, err := s.Enqueue(wechat.Outgoing{Custom: first}); err != nil {
				t.Fatal(err)
			}
			res.wait(t, 1)
			got := srv.Accepted(wechat.PathCustomSend)
			up := srv.Accepted(wechat.PathMediaUpload)
			if len(got) != 1 || len(up) != len(tt.uploads) {
				t.Fatalf("sent %d, uploaded %d", len(got), len(up))
			}
			for i, id := range tt.mediaID(got[0].Custom) {
				if up[i].MediaType != tt.uploads[i] || id != up[i].MediaID {
					t.Errorf("media %d: sent %q, uploaded %+v", i, id, up[i])
				}
			}
			for _, id := range tt.mediaID(first) {
				if id != "" {
					t.Errorf("the caller's message was changed: %+v", first)
				}
			}
			var calls []string
			for _, r := range srv.Received() {
				calls = append(calls, r.API)
			}
			if tt.typingOn && calls[0] != wechat.PathTyping {
				t.Errorf("typing was not shown before the upload: %v", calls)
			}
			if !tt.typingOn && count(srv, wechat.PathTyping) != 0 {
				t.Errorf("typing shown while off: %v", calls)
			}

			// WeChat forgets the media: one 40007, one fresh upload,
			// delivered.
			for _, r := range up {
				srv.ExpireMedia(r.MediaID)
			}
			ids, _ := s.Enqueue(wechat.Outgoing{Custom: tt.msg()})
			res.wait(t, 2)
			st, _ := s.Status(ids[0])
			if st.State != wechat.StateDelivered || st.Attempts != 2 {
				t.Errorf("after expiry: %+v", st)
			}
			if n := len(srv.Accepted(wechat.PathMediaUpload)); n != 2*len(tt.uploads) {
				t.Errorf("uploads after expiry = %d, want %d", n, 2*len(tt.uploads))
			}
		})
	}
}

// A missing media file fails the message at once with the reason.
func TestSenderMissingMediaFile(t *testing.T) {
	srv := fakeAPI(t)
	s, res := startSender(t, wechat.SenderOptions{Client: apiClient(srv, nil, nil), MaxRetryTime: time.Second})
	ids, _ := s.Enqueue(wechat.Outgoing{Custom: &wechat.CustomMessage{ToUser: "u", MsgType: "image", Image: &wechat.Media{File: "/no/such/file.jpg"}}})
	res.wait(t, 1)
	st, _ := s.Status(ids[0])
	if st.State != wechat.StateFailed || st.Attempts != 0 || len(srv.Received()) != 0 {
		t.Errorf("status = %+v, calls %d", st, len(srv.Received()))
	}
	if want := "no such file"; !strings.Contains(st.Reason, want) {
		t.Errorf("reason %q lacks %q", st.Reason, want)
	}
}
