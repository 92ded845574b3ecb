package delivery_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/store"
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

// The engine uploads the files named in messages (they travel through
// the store beside the message), fills the media_id in, and survives
// WeChat forgetting the media (40007) with one fresh upload.
func TestUploadsMediaFiles(t *testing.T) {
	img := writeFile(t, "card.png", "\x89PNG fake")
	vid := writeFile(t, "clip.mp4", "fake mp4")
	thumb := writeFile(t, "thumb.jpg", "fake thumb")
	voice := writeFile(t, "v.mp3", "fake mp3")
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
		{"voice", func() *wechat.CustomMessage {
			return &wechat.CustomMessage{ToUser: "u", MsgType: "voice", Voice: &wechat.Media{File: voice}}
		}, func(m *wechat.CustomMessage) []string { return []string{m.Voice.MediaID} }, []string{"voice"}, false},
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
			e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), Typing: tt.typingOn})
			first := tt.msg()
			accept(t, e, wechat.Outgoing{Custom: first})
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

			// A second message of the same files uses the cached media.
			accept(t, e, wechat.Outgoing{Custom: tt.msg()})
			res.wait(t, 2)
			if n := len(srv.Accepted(wechat.PathMediaUpload)); n != len(tt.uploads) {
				t.Errorf("uploads for the second message: %d, want none", n-len(tt.uploads))
			}

			// WeChat forgets the media: one 40007, one fresh upload,
			// delivered.
			for _, r := range up {
				srv.ExpireMedia(r.MediaID)
			}
			ids := accept(t, e, wechat.Outgoing{Custom: tt.msg()})
			res.wait(t, 3)
			if st := status(t, e, ids[0]); st.State != store.StateDelivered || st.Attempts != 2 {
				t.Errorf("after expiry: %+v, want delivered after 2 attempts", st)
			}
			if n := len(srv.Accepted(wechat.PathMediaUpload)); n != 2*len(tt.uploads) {
				t.Errorf("uploads after expiry = %d, want %d", n, 2*len(tt.uploads))
			}
		})
	}
}

// A missing media file fails the message at once with the reason, and no
// call is made for it.
func TestMissingMediaFile(t *testing.T) {
	srv := fakeAPI(t)
	e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), Typing: true})
	ids := accept(t, e, wechat.Outgoing{Custom: &wechat.CustomMessage{ToUser: "u", MsgType: "image", Image: &wechat.Media{File: "/no/such/file.jpg"}}})
	res.wait(t, 1)
	st := status(t, e, ids[0])
	if st.State != store.StateFailed || st.Attempts != 0 || len(srv.Received()) != 0 {
		t.Errorf("status = %+v, calls %d", st, len(srv.Received()))
	}
	if want := "no such file"; !strings.Contains(st.Reason, want) {
		t.Errorf("reason %q lacks %q", st.Reason, want)
	}
	if s := e.Stats(); s.FailedByReason["media file"] != 1 || s.Retried != 0 {
		t.Errorf("stats = %+v", s)
	}
}
