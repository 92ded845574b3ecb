package wechattest

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/wxreply/wxreply/wechat"
)

func textJSON(openid, content string) string {
	b, _ := json.Marshal(map[string]any{"touser": openid, "msgtype": "text", "text": map[string]string{"content": content}})
	return string(b)
}

// Text content is limited to 2048 bytes of UTF-8, not characters.
func TestTextLength(t *testing.T) {
	s := start(t)
	tok := stableToken(t, s, false)
	tests := []struct {
		name    string
		content string
		code    int
	}{
		{"2048 ASCII bytes", strings.Repeat("a", 2048), 0},
		{"2049 ASCII bytes", strings.Repeat("a", 2049), 45002},
		{"682 Chinese characters and 2 bytes (2048)", strings.Repeat("你", 682) + "ab", 0},
		{"683 Chinese characters (2049 bytes)", strings.Repeat("你", 683), 45002},
	}
	for _, tt := range tests {
		if r := post(t, s, wechat.PathCustomSend, tok, textJSON("u", tt.content)); r.code() != tt.code {
			t.Errorf("%s: %v, want %d", tt.name, r.body, tt.code)
		}
	}
}

// Recipients: openids of other accounts, users who unfollowed, and the
// count cap per interaction.
func TestRecipients(t *testing.T) {
	s := start(t, WithFollowers("fan", "leaver"), WithReplyCap(2), WithTemplates("T1"))
	tok := stableToken(t, s, false)
	s.Unfollow("leaver")
	template := func(openid string) string { return `{"touser":"` + openid + `","template_id":"T1"}` }
	typing := func(openid string) string { return `{"touser":"` + openid + `","command":"Typing"}` }
	steps := []struct {
		name, api, body string
		code            int
		do              func()
	}{
		{"another account's openid", wechat.PathCustomSend, text("stranger"), 40003, nil},
		{"another account's openid, template", wechat.PathTemplateSend, template("stranger"), 40003, nil},
		{"another account's openid, typing", wechat.PathTyping, typing("stranger"), 40003, nil},
		{"unfollowed", wechat.PathCustomSend, text("leaver"), 43004, nil},
		{"unfollowed, template", wechat.PathTemplateSend, template("leaver"), 43004, nil},
		{"first reply", wechat.PathCustomSend, text("fan"), 0, nil},
		{"a refused call does not count", wechat.PathCustomSend, `{"touser":"fan","msgtype":"sticker"}`, 40008, nil},
		{"typing does not count", wechat.PathTyping, typing("fan"), 0, nil},
		{"second reply", wechat.PathCustomSend, text("fan"), 0, nil},
		{"over the cap", wechat.PathCustomSend, text("fan"), 45047, nil},
		{"templates are not capped", wechat.PathTemplateSend, template("fan"), 0, nil},
		{"a new interaction restarts the count", wechat.PathCustomSend, text("fan"), 0, func() { s.Interact("fan") }},
		{"a follow brings a leaver back", wechat.PathCustomSend, text("leaver"), 0, func() { s.Interact("leaver") }},
	}
	for _, st := range steps {
		if st.do != nil {
			st.do()
		}
		if r := post(t, s, st.api, tok, st.body); r.code() != st.code {
			t.Errorf("%s: %v, want %d", st.name, r.body, st.code)
		}
	}
}

func uploadFile(t *testing.T, s *Server, tok, mediaType, name string, size int) reply {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	fw, _ := mw.CreateFormFile("media", name)
	_, _ = fw.Write(bytes.Repeat([]byte{0xff}, size))
	_ = mw.Close()
	req, _ := http.NewRequest(http.MethodPost, s.URL+wechat.PathMediaUpload+"?type="+mediaType+"&access_token="+tok, &b)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return do(t, req)
}

// Each media type takes its formats and sizes only.
func TestUploadLimits(t *testing.T) {
	s := start(t)
	tok := stableToken(t, s, false)
	tests := []struct {
		typ, name string
		size      int
		code      int
	}{
		{"image", "a.PNG", 1000, 0},
		{"image", "a.webp", 1000, 40005},
		{"image", "a.jpg", 10<<20 + 1, 40009},
		{"voice", "a.mp3", 2 << 20, 0},
		{"voice", "a.wav", 1000, 40005},
		{"voice", "a.amr", 2<<20 + 1, 40010},
		{"video", "a.mp4", 1000, 0},
		{"video", "a.mov", 1000, 40005},
		{"thumb", "a.jpg", 64 << 10, 0},
		{"thumb", "a.png", 1000, 40005},
		{"thumb", "a.jpg", 64<<10 + 1, 40012},
		{"image", "noext", 1000, 40005},
	}
	for _, tt := range tests {
		if r := uploadFile(t, s, tok, tt.typ, tt.name, tt.size); r.code() != tt.code {
			t.Errorf("%s %s (%d bytes): %v, want %d", tt.typ, tt.name, tt.size, r.body, tt.code)
		}
	}
}
