package handlers

import (
	"net/http"
	"strings"
	"testing"
)

// The request log names the query's openid only once the signature held
// (anyone can put a real user's openid in a forged request), and caps what
// an outsider can make it write.
func TestRequestLogTrustsOnlySignedOpenIDs(t *testing.T) {
	srv, logs := newLoggedServer(t, &recorder{}, nil)
	forged := srv.URL + "/wechat?openid=oVICTIM_forged&signature=x&timestamp=1&nonce=1&echostr=e"
	resp, err := http.Get(forged)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get(signedURL(srv.URL, "") + "&echostr=e")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	long := srv.URL + "/" + strings.Repeat("p", 10000)
	if resp, err = http.Get(long); err == nil {
		resp.Body.Close()
	}
	out := logs.String()
	if strings.Contains(out, "oVICTIM_forged") {
		t.Errorf("a forged request's openid is in the log:\n%s", out)
	}
	if !strings.Contains(out, `"openid":"oTEST_user_0001"`) {
		t.Errorf("a signed request's openid is not in the log:\n%s", out)
	}
	if strings.Contains(out, strings.Repeat("p", 300)) {
		t.Error("a 10,000-byte path was logged whole")
	}
}
