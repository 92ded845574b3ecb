package main

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

// qrcodeEnv is the environment of an account on the fake API.
func qrcodeEnv(api *wechattest.Server) map[string]string {
	return map[string]string{"WECHAT_APPID": api.AppID, "WECHAT_APPSECRET": api.AppSecret, "WECHAT_API_BASE": api.URL}
}

func TestQRCodeCommand(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantBody string
		expires  string
	}{
		{"temporary, 30 days by default", []string{"spring"},
			`{"expire_seconds":2592000,"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"spring"}}}`, "in 720h0m0s"},
		{"temporary, -expire", []string{"-expire", "24h", "spring-2026"},
			`{"expire_seconds":86400,"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"spring-2026"}}}`, "in 24h0m0s"},
		{"permanent", []string{"-permanent", "门店/上海"},
			`{"action_name":"QR_LIMIT_STR_SCENE","action_info":{"scene":{"scene_str":"门店/上海"}}}`, "never"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := wechattest.NewServer()
			t.Cleanup(api.Close)
			code, out, errOut := runWith(qrcodeEnv(api), append([]string{"qrcode"}, tt.args...)...)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			got := api.Accepted(wechat.PathQRCodeCreate)
			if len(got) != 1 {
				t.Fatalf("qrcode/create calls %d, want 1", len(got))
			}
			if !jsonEqual(t, got[0].Body, tt.wantBody) {
				t.Errorf("body %s\nwant %s", got[0].Body, tt.wantBody)
			}
			q := got[0].QRCodeAnswer
			want := []string{
				"ticket: " + q.Ticket,
				"url: " + q.URL,
				"image: https://mp.weixin.qq.com/cgi-bin/showqrcode?ticket=" + url.QueryEscape(q.Ticket),
				"expires: ",
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != len(want) {
				t.Fatalf("stdout %q: want %d lines", out, len(want))
			}
			for i, w := range want {
				if !strings.HasPrefix(lines[i], w) || (i < 3 && lines[i] != w) {
					t.Errorf("line %d %q, want %q", i+1, lines[i], w)
				}
			}
			if !strings.Contains(lines[3], tt.expires) {
				t.Errorf("%q does not say %q", lines[3], tt.expires)
			}
			if !strings.Contains(want[2], "%2B") && !strings.Contains(want[2], "%2F") && !strings.Contains(want[2], "%3D") {
				t.Errorf("the image URL %q does not show the ticket's escaping", want[2])
			}
			if errOut != "" {
				t.Errorf("stderr %q", errOut)
			}
		})
	}
}

func jsonEqual(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("body %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &b); err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestQRCodeUsageErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     func(map[string]string)
		wantErr string
	}{
		{"no scene", nil, nil, "usage: wxreply qrcode"},
		{"empty scene", []string{""}, nil, "the scene is empty"},
		{"scene over 64 bytes", []string{strings.Repeat("场", 22)}, nil, "66 bytes long: WeChat takes at most 64"},
		{"two scenes", []string{"a", "b"}, nil, "one SCENE, got 2 arguments"},
		{"expire over 30 days", []string{"-expire", "721h", "spring"}, nil, "over WeChat's 30 days"},
		{"expire under 60s", []string{"-expire", "59s", "spring"}, nil, "under 60s"},
		{"expire and permanent", []string{"-permanent", "-expire", "1h", "spring"}, nil, "-expire and -permanent do not go together"},
		{"not a duration", []string{"-expire", "7d", "spring"}, nil, "invalid value"},
		{"no credentials", []string{"spring"}, func(e map[string]string) { delete(e, "WECHAT_APPSECRET") }, "WECHAT_APPID and WECHAT_APPSECRET"},
		{"bad API base", []string{"spring"}, func(e map[string]string) { e["WECHAT_API_BASE"] = "ftp://x" }, "is not an http or https URL"},
		{"secret twice", []string{"spring"}, func(e map[string]string) { e["WECHAT_APPSECRET_FILE"] = "/nonexistent" }, "WECHAT_APPSECRET and WECHAT_APPSECRET_FILE are both set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := wechattest.NewServer()
			t.Cleanup(api.Close)
			e := qrcodeEnv(api)
			if tt.env != nil {
				tt.env(e)
			}
			code, out, errOut := runWith(e, append([]string{"qrcode"}, tt.args...)...)
			if code != 2 || out != "" || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 and %q", code, out, errOut, tt.wantErr)
			}
			if n := len(api.Received()); n != 0 {
				t.Errorf("%d calls reached WeChat", n)
			}
		})
	}
	if code, _, errOut := runWith(nil, "qrcode", "-h"); code != 0 || !strings.Contains(errOut, "-permanent") || !strings.Contains(errOut, "-expire") || strings.Contains(errOut, "-token") {
		t.Errorf("qrcode -h: exit %d, %q", code, errOut)
	}
}

func TestQRCodeWeChatErrors(t *testing.T) {
	t.Run("forced errcode", func(t *testing.T) {
		api := wechattest.NewServer()
		t.Cleanup(api.Close)
		api.FailNext(wechat.PathQRCodeCreate, 45009, 1)
		code, out, errOut := runWith(qrcodeEnv(api), "qrcode", "spring")
		if code != 1 || out != "" || !strings.Contains(errOut, "errcode 45009: forced failure") {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
	t.Run("wrong AppSecret", func(t *testing.T) {
		api := wechattest.NewServer()
		t.Cleanup(api.Close)
		e := qrcodeEnv(api)
		e["WECHAT_APPSECRET"] = "wrong-secret-0000000000000000000"
		code, _, errOut := runWith(e, "qrcode", "spring")
		if code != 1 || !strings.Contains(errOut, "40125") || strings.Contains(errOut, "wrong-secret") {
			t.Errorf("exit %d, stderr %q", code, errOut)
		}
	})
}
