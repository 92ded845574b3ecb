package wechattest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// answer is what a message call is answered with.
type answer struct {
	code int
	msg  string
}

var okAnswer = answer{0, "ok"}

// serveMessage handles custom/send, template/send and custom/typing:
// forced failures, then the access token, then the payload, as the real
// API orders its checks.
func (s *Server) serveMessage(w http.ResponseWriter, r *http.Request) {
	api := r.URL.Path
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	defer s.track()()
	rec := Received{API: api, Time: time.Now(), HTTPStatus: http.StatusOK}
	body, ans, ok := s.readCall(w, r, &rec)
	if !ok {
		return
	}
	s.mu.Lock()
	ans = s.tokenAnswerLocked(r, ans)
	payload := s.checkPayloadLocked(api, body, &rec)
	if ans.code == 0 {
		ans = payload
	}
	if ans.code == 0 && api == wechat.PathCustomSend && s.replyCap > 0 {
		// Counted only when everything else passed: a refused call
		// costs the user nothing of the cap.
		if s.replies[rec.OpenID] >= s.replyCap {
			ans = answer{45047, "out of response count limit"}
		} else {
			s.replies[rec.OpenID]++
		}
	}
	if ans.code == 0 && api == wechat.PathTemplateSend {
		rec.MsgID = s.nextMsgID
		s.nextMsgID++
	}
	s.mu.Unlock()

	rec.ErrCode = ans.code
	s.record(rec)
	if rec.MsgID != 0 {
		writeJSON(w, map[string]any{"errcode": 0, "errmsg": "ok", "msgid": rec.MsgID})
	} else {
		writeErr(w, ans.code, ans.msg)
	}
}

// checkPayloadLocked decodes body into rec and returns the real API's
// answer to it.
func (s *Server) checkPayloadLocked(api string, body []byte, rec *Received) answer {
	switch api {
	case wechat.PathCustomSend:
		var m wechat.CustomMessage
		if err := json.Unmarshal(body, &m); err != nil {
			return answer{47001, "data format error"}
		}
		rec.Custom, rec.OpenID = &m, m.ToUser
		return s.checkCustomLocked(&m)
	case wechat.PathTemplateSend:
		var m wechat.TemplateMessage
		if err := json.Unmarshal(body, &m); err != nil {
			return answer{47001, "data format error"}
		}
		rec.Template, rec.OpenID = &m, m.ToUser
		if a := s.recipientLocked(m.ToUser); a.code != 0 {
			return a
		}
		if m.TemplateID == "" || (len(s.templates) > 0 && !s.templates[m.TemplateID]) {
			return answer{40037, "invalid template_id"}
		}
		return okAnswer
	default: // typing
		var m struct {
			ToUser  string `json:"touser"`
			Command string `json:"command"`
		}
		if err := json.Unmarshal(body, &m); err != nil {
			return answer{47001, "data format error"}
		}
		rec.OpenID, rec.Command = m.ToUser, m.Command
		if a := s.recipientLocked(m.ToUser); a.code != 0 {
			return a
		}
		switch {
		case m.Command != wechat.TypingOn && m.Command != wechat.TypingOff:
			return answer{47001, "data format error"}
		case s.outOfWindow[m.ToUser]:
			return answer{45015, "response out of time limit or subscription is canceled"}
		}
		return okAnswer
	}
}

// checkCustomLocked checks a customer-service message's fields the way
// message/custom/send does.
func (s *Server) checkCustomLocked(m *wechat.CustomMessage) answer {
	malformed := answer{47001, "data format error"}
	invalidMedia := answer{40007, "invalid media_id"}
	media := func(id string) answer {
		valid, issued := s.media[id]
		if id == "" || (issued && !valid) || (!issued && s.strictMedia) {
			return invalidMedia
		}
		return okAnswer
	}
	if a := s.recipientLocked(m.ToUser); a.code != 0 {
		return a
	}
	var a answer
	switch m.MsgType {
	case wechat.MsgTypeText:
		switch {
		case m.Text == nil:
			a = malformed
		case m.Text.Content == "":
			a = answer{44004, "empty content"}
		case len(m.Text.Content) > wechat.MaxTextBytes:
			a = answer{45002, "content size out of limit"}
		}
	case wechat.MsgTypeImage, wechat.MsgTypeVoice, wechat.MsgTypeMPNews:
		p := map[string]*wechat.Media{wechat.MsgTypeImage: m.Image, wechat.MsgTypeVoice: m.Voice, wechat.MsgTypeMPNews: m.MPNews}[m.MsgType]
		if p == nil {
			a = malformed
		} else {
			a = media(p.MediaID)
		}
	case wechat.MsgTypeVideo:
		switch {
		case m.Video == nil:
			a = malformed
		case m.Video.ThumbMediaID != "" && media(m.Video.ThumbMediaID).code != 0:
			a = invalidMedia
		default:
			a = media(m.Video.MediaID)
		}
	case wechat.MsgTypeMusic:
		switch {
		case m.Music == nil || m.Music.MusicURL == "" || m.Music.HQMusicURL == "":
			a = malformed
		default:
			a = media(m.Music.ThumbMediaID)
		}
	case wechat.MsgTypeNews:
		switch {
		case m.News == nil:
			a = malformed
		case len(m.News.Articles) == 0:
			a = answer{44003, "empty news data"}
		case len(m.News.Articles) > 1:
			a = answer{45008, "article size out of limit"}
		}
	case wechat.MsgTypeMPNewsArticle:
		if m.MPNewsArticle == nil || m.MPNewsArticle.ArticleID == "" {
			a = malformed
		}
	case wechat.MsgTypeMsgMenu:
		if m.MsgMenu == nil || len(m.MsgMenu.List) == 0 {
			a = malformed
			break
		}
		for _, it := range m.MsgMenu.List {
			if it.ID == "" || it.Content == "" {
				a = malformed
			}
		}
	case wechat.MsgTypeWxCard:
		if m.WxCard == nil || m.WxCard.CardID == "" {
			a = malformed
		}
	case wechat.MsgTypeMiniProgramPage:
		p := m.MiniProgramPage
		switch {
		case p == nil || p.Title == "" || p.AppID == "" || p.PagePath == "":
			a = malformed
		default:
			a = media(p.ThumbMediaID)
		}
	default:
		return answer{40008, "invalid message type"}
	}
	if a.code != 0 {
		return a
	}
	if s.outOfWindow[m.ToUser] {
		return answer{45015, "response out of time limit or subscription is canceled"}
	}
	return okAnswer
}

// recipientLocked is the real API's answer about an openid.
func (s *Server) recipientLocked(openid string) answer {
	switch {
	case openid == "" || (s.followers != nil && !s.followers[openid]):
		return answer{40003, "invalid openid"}
	case s.unfollowed[openid]:
		return answer{43004, "require subscribe"}
	}
	return okAnswer
}

// forcedFailure applies what the fake was told to do to the next call of
// api: wait, drop the call, or answer a forced HTTP status or garbled
// body (done: the call is recorded and answered). Otherwise it returns the
// forced errcode, 0 for none.
func (s *Server) forcedFailure(w http.ResponseWriter, r *http.Request, api string, rec *Received) (code int, done bool) {
	f, ok := s.takeFailure(r.Context(), api)
	if !ok || !sleep(r.Context(), f.delay) {
		rec.Abandoned = true
		s.record(*rec)
		return 0, true
	}
	if f.status != 0 || f.raw {
		rec.HTTPStatus = max(f.status, http.StatusOK)
		rec.Garbled = f.raw
		s.record(*rec)
		writeForced(w, f)
		return 0, true
	}
	return f.code, false
}

// readCall is the start every authenticated JSON call shares: its body
// (at most 1 MiB; a call whose body cannot be read is recorded abandoned),
// then the forced failures (answered here). ok is false when the call was
// answered already; else first is the answer so far: a forced errcode, or
// 0.
func (s *Server) readCall(w http.ResponseWriter, r *http.Request, rec *Received) (body []byte, first answer, ok bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		rec.Abandoned = true
		s.record(*rec)
		return nil, answer{}, false
	}
	if len(body) > 0 {
		rec.Body = body
	}
	code, done := s.forcedFailure(w, r, rec.API, rec)
	if done {
		return nil, answer{}, false
	}
	return body, answer{code, "forced failure"}, true
}

// tokenAnswerLocked is first, or, when first passed, the answer to the
// call's access token.
func (s *Server) tokenAnswerLocked(r *http.Request, first answer) answer {
	if first.code != 0 {
		return first
	}
	if c := s.checkTokenLocked(r.URL.Query().Get("access_token"), time.Now()); c != 0 {
		return answer{c, "invalid credential, access_token is invalid or not latest"}
	}
	return first
}

// serveUpload is media/upload: multipart field "media", answered with a
// media_id (thumb_media_id for type=thumb, as the real API does).
func (s *Server) serveUpload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	defer s.track()()
	api := r.URL.Path
	q := r.URL.Query()
	rec := Received{API: api, Time: time.Now(), HTTPStatus: http.StatusOK, MediaType: q.Get("type")}
	code, done := s.forcedFailure(w, r, api, &rec)
	if done {
		return
	}
	ans := answer{code, "forced failure"}
	if ans.code == 0 {
		s.mu.Lock()
		if c := s.checkTokenLocked(q.Get("access_token"), time.Now()); c != 0 {
			ans = answer{c, "invalid credential, access_token is invalid or not latest"}
		}
		s.mu.Unlock()
	}
	if ans.code == 0 {
		switch rec.MediaType {
		case wechat.MediaImage, wechat.MediaVoice, wechat.MediaVideo, wechat.MediaThumb:
		default:
			ans = answer{40004, "invalid media type"}
		}
	}
	if ans.code == 0 {
		ans = readUpload(r, &rec)
	}
	if ans.code == 0 {
		ans = checkUpload(rec)
	}
	rec.ErrCode = ans.code
	if ans.code != 0 {
		s.record(rec)
		writeErr(w, ans.code, ans.msg)
		return
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	rec.MediaID = "FAKEMEDIA_" + hex.EncodeToString(b[:])
	s.mu.Lock()
	s.media[rec.MediaID] = true
	s.mu.Unlock()
	idKey := "media_id"
	if rec.MediaType == wechat.MediaThumb {
		idKey = "thumb_media_id"
	}
	s.record(rec)
	writeJSON(w, map[string]any{"type": rec.MediaType, idKey: rec.MediaID, "created_at": time.Now().Unix()})
}

// mediaRule is what the real API takes of one media type.
type mediaRule struct {
	maxBytes int
	exts     []string
	sizeCode int // the errcode of a file too large
}

// mediaRules are the temporary media limits of media/upload.
var mediaRules = map[string]mediaRule{
	wechat.MediaImage: {10 << 20, []string{".bmp", ".png", ".jpeg", ".jpg", ".gif"}, 40009},
	wechat.MediaVoice: {2 << 20, []string{".amr", ".mp3"}, 40010},
	wechat.MediaVideo: {10 << 20, []string{".mp4"}, 40011},
	wechat.MediaThumb: {64 << 10, []string{".jpg", ".jpeg"}, 40012},
}

// checkUpload answers a file of the wrong format (judged, like the real
// API, by its name) or size for its media type.
func checkUpload(rec Received) answer {
	rule := mediaRules[rec.MediaType]
	if !slices.Contains(rule.exts, strings.ToLower(path.Ext(rec.FileName))) {
		return answer{40005, "invalid file type"}
	}
	if rec.FileSize > rule.maxBytes {
		return answer{rule.sizeCode, "invalid media size"}
	}
	return okAnswer
}

// readUpload reads the multipart field "media" into rec.
func readUpload(r *http.Request, rec *Received) answer {
	missing := answer{41005, "media data missing"}
	if err := r.ParseMultipartForm(32 << 20); err != nil {
		return missing
	}
	f, h, err := r.FormFile("media")
	if err != nil {
		return missing
	}
	defer f.Close()
	n, err := io.Copy(io.Discard, f)
	if err != nil || n == 0 {
		return missing
	}
	rec.FileName, rec.FileSize = h.Filename, int(n)
	return okAnswer
}
