package wechattest

import (
	"strings"
	"testing"

	"github.com/wxreply/wxreply/wechat"
)

func TestQRCodeCreate(t *testing.T) {
	s := start(t)
	tok := stableToken(t, s, false)
	long := strings.Repeat("x", 65)
	tests := []struct {
		name, token, body string
		code              int
		expire            float64 // the answer's expire_seconds, when accepted
	}{
		{"temporary", tok, `{"expire_seconds":86400,"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"spring"}}}`, 0, 86400},
		{"temporary over 30 days is capped", tok, `{"expire_seconds":9999999,"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"spring"}}}`, 0, 2592000},
		{"temporary without expire lives 60s", tok, `{"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"spring"}}}`, 0, 60},
		{"permanent", tok, `{"action_name":"QR_LIMIT_STR_SCENE","action_info":{"scene":{"scene_str":"spring"}}}`, 0, 0},
		{"scene of 64 bytes", tok, `{"action_name":"QR_LIMIT_STR_SCENE","action_info":{"scene":{"scene_str":"` + long[:64] + `"}}}`, 0, 0},
		{"scene of 65 bytes", tok, `{"action_name":"QR_LIMIT_STR_SCENE","action_info":{"scene":{"scene_str":"` + long + `"}}}`, 40097, 0},
		{"no scene", tok, `{"action_name":"QR_STR_SCENE","expire_seconds":60,"action_info":{"scene":{}}}`, 40097, 0},
		{"unknown action", tok, `{"action_name":"QR_CARD","action_info":{"scene":{"scene_str":"spring"}}}`, 40097, 0},
		{"empty body", tok, ``, 44002, 0},
		{"not JSON", tok, `{"action_name":`, 47001, 0},
		{"no token", "", `{"action_name":"QR_LIMIT_STR_SCENE","action_info":{"scene":{"scene_str":"spring"}}}`, 41001, 0},
		{"bad token", "nonsense", `{"action_name":"QR_LIMIT_STR_SCENE","action_info":{"scene":{"scene_str":"spring"}}}`, 40014, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, s, wechat.PathQRCodeCreate, tt.token, tt.body)
			if r.code() != tt.code {
				t.Fatalf("answer %v, want errcode %d", r.body, tt.code)
			}
			if tt.code != 0 {
				return
			}
			ticket, _ := r.body["ticket"].(string)
			u, _ := r.body["url"].(string)
			exp, _ := r.body["expire_seconds"].(float64)
			if ticket == "" || !strings.HasPrefix(u, "http://weixin.qq.com/q/") || exp != tt.expire {
				t.Errorf("answer %v, want a ticket, a url and expire_seconds %v", r.body, tt.expire)
			}
		})
	}
	got := s.Received()
	if len(got) != len(tests) {
		t.Fatalf("%d calls recorded, want %d", len(got), len(tests))
	}
	if q := got[0].QRCode; q == nil || q.ActionInfo.Scene.SceneStr != "spring" || q.ExpireSeconds != 86400 || got[0].QRCodeAnswer == nil {
		t.Errorf("first call recorded as %+v", got[0])
	}
	s.FailNext(wechat.PathQRCodeCreate, 45009, 1)
	if r := post(t, s, wechat.PathQRCodeCreate, tok, tests[0].body); r.code() != 45009 {
		t.Errorf("forced failure: %v", r.body)
	}
}
