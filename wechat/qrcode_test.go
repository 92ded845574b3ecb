package wechat_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

func TestQRCodeRequests(t *testing.T) {
	tests := []struct {
		req  *wechat.QRCodeRequest
		want string
	}{
		{wechat.TemporaryQRCode("spring", 30*24*time.Hour),
			`{"expire_seconds":2592000,"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"spring"}}}`},
		{wechat.PermanentQRCode("shop-001"),
			`{"action_name":"QR_LIMIT_STR_SCENE","action_info":{"scene":{"scene_str":"shop-001"}}}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.req)
		if err != nil || string(b) != tt.want {
			t.Errorf("body %s, %v; want %s", b, err, tt.want)
		}
	}
	q := wechat.QRCode{Ticket: "gQH4+8/a=="}
	if got, want := q.ImageURL(), "https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=gQH4%2B8%2Fa%3D%3D"; got != want {
		t.Errorf("ImageURL %s, want %s", got, want)
	}
	for scene, bad := range map[string]bool{"": true, "spring": false, strings.Repeat("a", 64): false, strings.Repeat("a", 65): true, "\xff": true} {
		if err := wechat.CheckScene(scene); (err != nil) != bad {
			t.Errorf("CheckScene(%q) = %v", scene, err)
		}
	}
}
