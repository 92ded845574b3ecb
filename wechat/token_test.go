package wechat_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/wxreply/wxreply/wechat"
)

// A token API that keeps failing is asked once per pause, not once per
// caller: a thousand queued replies must not spend the daily quota. Every
// caller gets the failure, typed, with what to do about it.
func TestTokenFailureIsNotHammered(t *testing.T) {
	tests := []struct {
		name   string
		legacy bool
		code   int    // what the token API answers
		hint   string // in the error text
		reason string
	}{
		{"ip not whitelisted", false, 40164, "whitelist", "access token fetch failed: server IP not whitelisted"},
		{"system busy", false, -1, "", "access token fetch failed: system busy"},
		{"quota spent, legacy", true, 45009, "quota", "access token fetch failed: token API quota spent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeAPI(t)
			api := wechat.PathStableToken
			if tt.legacy {
				api = wechat.PathToken
			}
			srv.FailNext(api, tt.code, 1000)
			c := apiClient(srv, nil, func(o *wechat.ClientOptions) { o.UseLegacyToken = tt.legacy })
			s, res := startSender(t, wechat.SenderOptions{Client: c, Workers: 8})
			const n = 200
			for i := range n {
				if _, err := s.Enqueue(textOut(fmt.Sprintf("u%d", i), "x")); err != nil {
					t.Fatal(err)
				}
			}
			res.wait(t, n)
			if got := srv.TokenFetches(); got > 2 {
				t.Errorf("token fetches = %d for %d messages, want 1 (2 at most if a pause ended)", got, n)
			}
			if got := count(srv, wechat.PathCustomSend); got != 0 {
				t.Errorf("%d sends without a token", got)
			}
			if st := s.Stats(); st.Failed != n {
				t.Errorf("stats = %+v, want %d failed", st, n)
			}
			err := c.SendCustom(context.Background(), textTo("u", "x"))
			var ae *wechat.APIError
			if !errors.As(err, &ae) || ae.Code != tt.code || ae.API != api {
				t.Fatalf("err = %v, want APIError %d from %s", err, tt.code, api)
			}
			if !strings.Contains(err.Error(), "access token") || !strings.Contains(err.Error(), tt.hint) {
				t.Errorf("err %q does not say it is the token, or what to do (%q)", err, tt.hint)
			}
			res.mu.Lock()
			defer res.mu.Unlock()
			for _, r := range res.byID {
				if r[0].Reason != tt.reason || r[0].ErrCode != tt.code {
					t.Fatalf("result = %q (%d), want %q", r[0].Reason, r[0].ErrCode, tt.reason)
				}
			}
		})
	}
}

// /cgi-bin/token answers a wrong secret with 40001, the errcode of a
// rejected access_token. That must not start a refetch loop: one fetch,
// no send, and a reason that names the secret.
func TestLegacyTokenWrongSecret(t *testing.T) {
	srv := fakeAPI(t)
	c := apiClient(srv, nil, func(o *wechat.ClientOptions) {
		o.UseLegacyToken = true
		o.AppSecret = "wrong"
	})
	s, res := startSender(t, wechat.SenderOptions{Client: c})
	ids, _ := s.Enqueue(textOut("u", "x"))
	res.wait(t, 1)
	st, _ := s.Status(ids[0])
	if st.State != wechat.StateFailed || st.ErrCode != 40001 || st.Reason != "access token fetch failed: wrong AppSecret" {
		t.Errorf("status = %+v", st)
	}
	if got := srv.TokenFetches(); got != 1 {
		t.Errorf("token fetches = %d, want 1", got)
	}
	if got := len(srv.Received()); got != 0 {
		t.Errorf("%d API calls without a token", got)
	}
	r := res.get(ids[0])
	if len(r) != 1 || !strings.Contains(r[0].Err.Error(), "WECHAT_APPSECRET") {
		t.Errorf("result %+v does not name the setting to fix", r)
	}
}

// Concurrent callers during a failing fetch share it and its failure.
func TestTokenFailureSharedByConcurrentCallers(t *testing.T) {
	srv := fakeAPI(t)
	srv.FailHTTP(wechat.PathStableToken, 502, 1000)
	c := apiClient(srv, nil, nil)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Token(context.Background())
			var he *wechat.HTTPError
			if !errors.As(err, &he) || he.StatusCode != 502 || !wechat.Retryable(err) {
				t.Errorf("err = %v, want a retryable http 502", err)
			}
		}()
	}
	wg.Wait()
	if got := srv.TokenFetches(); got != 1 {
		t.Errorf("token fetches = %d, want 1", got)
	}
}
