package wechattest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// serveQRCode is qrcode/create: forced failures, the access token, then
// the body as the real API checks it. A temporary code's expire_seconds
// is capped at 30 days and defaults to 60 seconds, as WeChat documents;
// a scene_str missing or over 64 bytes, or an action other than the
// string scenes, is 40097 (invalid args). Each code gets a fresh ticket
// and the weixin.qq.com/q/ URL it encodes.
func (s *Server) serveQRCode(w http.ResponseWriter, r *http.Request) {
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
	s.mu.Unlock()
	var q wechat.QRCodeRequest
	if ans.code == 0 {
		ans = checkQRCode(body, &q)
		rec.QRCode = &q
	}
	rec.ErrCode = ans.code
	if ans.code != 0 {
		s.record(rec)
		writeErr(w, ans.code, ans.msg)
		return
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	code64 := base64.RawURLEncoding.EncodeToString(b[:12])
	out := wechat.QRCode{
		// Real tickets are base64 with + / and =: the image URL must
		// escape them.
		Ticket: "gQ" + base64.StdEncoding.EncodeToString(b[:]) + "==",
		URL:    "http://weixin.qq.com/q/" + code64,
	}
	if q.ActionName == wechat.QRStrScene {
		out.ExpireSeconds = min(max(q.ExpireSeconds, 60), int64(wechat.MaxQRExpire/time.Second))
		if q.ExpireSeconds == 0 {
			out.ExpireSeconds = 60
		}
	}
	rec.QRCodeAnswer = &out
	s.record(rec)
	writeJSON(w, out)
}

// checkQRCode decodes a qrcode/create body into q and returns the real
// API's answer to it.
func checkQRCode(body []byte, q *wechat.QRCodeRequest) answer {
	if len(bytes.TrimSpace(body)) == 0 {
		return answer{44002, "empty post data"}
	}
	if err := json.Unmarshal(body, q); err != nil {
		return answer{47001, "data format error"}
	}
	invalid := answer{40097, "invalid args"}
	switch q.ActionName {
	case wechat.QRStrScene:
		if q.ExpireSeconds < 0 {
			return invalid
		}
	case wechat.QRLimitStrScene:
	default:
		return invalid
	}
	if n := len(q.ActionInfo.Scene.SceneStr); n == 0 || n > wechat.MaxSceneBytes {
		return invalid
	}
	return okAnswer
}
