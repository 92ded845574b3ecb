package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
)

// A cold start with many users at once fetches one token, shared by
// every send.
func TestColdStartFetchesOneToken(t *testing.T) {
	srv := fakeAPI(t)
	srv.SetLatency(wechat.PathStableToken, 50*time.Millisecond)
	e, res := startEngine(t, delivery.Options{Client: apiClient(t, srv, nil, nil), InFlight: 40})
	var items []wechat.Outgoing
	for i := range 40 {
		items = append(items, textOut(fmt.Sprintf("user-%d", i), "hi"))
	}
	accept(t, e, items...)
	res.wait(t, 40)
	if got := srv.TokenFetches(); got != 1 {
		t.Errorf("token fetches = %d, want 1", got)
	}
	if s := e.Stats(); s.Delivered != 40 || len(srv.Accepted(wechat.PathCustomSend)) != 40 {
		t.Errorf("stats %+v, accepted %d", s, len(srv.Accepted(wechat.PathCustomSend)))
	}
}

// A token API that keeps failing is not asked again for every message:
// the client gives its failure back for a while, and the messages fail
// with the token's reason (a retryable answer once MaxAge is over).
func TestTokenFailureIsNotHammered(t *testing.T) {
	tests := []struct {
		name   string
		legacy bool
		code   int    // what the token API answers
		hint   string // in the error text
		reason string
		label  string // of FailedByReason
	}{
		{"ip not whitelisted", false, 40164, "whitelist", "access token fetch failed: server IP not whitelisted", "access token fetch failed"},
		{"system busy", false, -1, "", "access token fetch failed: system busy", "access token fetch failed"},
		{"quota spent, legacy", true, 45009, "quota", "access token fetch failed: token API quota spent", "access token fetch failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeAPI(t)
			api := wechat.PathStableToken
			if tt.legacy {
				api = wechat.PathToken
			}
			srv.FailNext(api, tt.code, 1000)
			c := apiClient(t, srv, nil, func(o *wechat.ClientOptions) { o.UseLegacyToken = tt.legacy })
			// MaxAge well inside the client's first pause (1 s) after a
			// failed fetch.
			e, res := startEngine(t, delivery.Options{Client: c, InFlight: 8,
				BaseBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, MaxAge: 300 * time.Millisecond})
			const n = 200
			for i := range n {
				accept(t, e, textOut(fmt.Sprintf("u%d", i), "x"))
			}
			res.wait(t, n)
			if got := srv.TokenFetches(); got > 2 {
				t.Errorf("token fetches = %d for %d messages, want 1 (2 at most if a pause ended)", got, n)
			}
			if got := count(srv, wechat.PathCustomSend); got != 0 {
				t.Errorf("%d sends without a token", got)
			}
			if s := e.Stats(); s.Failed != n || s.FailedByReason[tt.label] != n || s.QuotaPauses != 0 {
				t.Errorf("stats = %+v, want %d failed", s, n)
			}
			for id, r := range res.all() {
				if len(r) != 1 || r[0].Reason != tt.reason || r[0].ErrCode != tt.code {
					t.Fatalf("%s: results %+v, want %q (%d)", id, r, tt.reason, tt.code)
				}
				if !strings.Contains(r[0].Err.Error(), "access token") || !strings.Contains(r[0].Err.Error(), tt.hint) {
					t.Errorf("err %q does not say it is the token, or what to do (%q)", r[0].Err, tt.hint)
				}
			}
			err := c.SendCustom(context.Background(), textTo("u", "x"))
			var ae *wechat.APIError
			if !errors.As(err, &ae) || ae.Code != tt.code || ae.API != api {
				t.Fatalf("err = %v, want APIError %d from %s", err, tt.code, api)
			}
		})
	}
}

// A wrong AppSecret fails the message with a reason that says so, after
// one token fetch and no other call.
func TestLegacyTokenWrongSecret(t *testing.T) {
	srv := fakeAPI(t)
	c := apiClient(t, srv, nil, func(o *wechat.ClientOptions) {
		o.UseLegacyToken = true
		o.AppSecret = "wrong"
	})
	e, res := startEngine(t, delivery.Options{Client: c})
	ids := accept(t, e, textOut("u", "x"))
	res.wait(t, 1)
	st := status(t, e, ids[0])
	if st.State != store.StateFailed || st.ErrCode != 40001 || st.Reason != "access token fetch failed: wrong AppSecret" {
		t.Errorf("status = %+v", st)
	}
	if got := srv.TokenFetches(); got != 1 {
		t.Errorf("token fetches = %d, want 1", got)
	}
	if got := len(srv.Received()); got != 0 {
		t.Errorf("%d API calls without a token", got)
	}
	r := res.get(ids[0])
	if len(r) != 1 || r[0].Err == nil || !strings.Contains(r[0].Err.Error(), "WECHAT_APPSECRET") {
		t.Errorf("result %+v does not name the setting to fix", r)
	}
}
