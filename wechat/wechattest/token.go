package wechattest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// tokenGrace is how long a token stays valid after a newer one was issued
// by /cgi-bin/token or a forced stable_token refresh, as on the real API.
const tokenGrace = 5 * time.Minute

const tokenPrefix = "FAKEAT_"

type tokenState struct {
	expires time.Time
	revoked bool
}

// InvalidateTokens revokes every token issued so far, as when another
// process forces a refresh: calls with them answer 40001, and the next
// token call issues a new one.
func (s *Server) InvalidateTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		t.revoked = true
	}
	clear(s.current)
}

// issueLocked makes a new token current for api; the old one of that API
// lives tokenGrace on. /cgi-bin/token and stable_token do not touch each
// other's tokens.
func (s *Server) issueLocked(api string, now time.Time) string {
	if old, ok := s.tokens[s.current[api]]; ok {
		old.expires = minTime(old.expires, now.Add(tokenGrace))
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	tok := tokenPrefix + hex.EncodeToString(b[:])
	s.tokens[tok] = &tokenState{expires: now.Add(s.tokenTTL)}
	s.current[api] = tok
	return tok
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// checkTokenLocked returns the errcode the real API gives for tok.
func (s *Server) checkTokenLocked(tok string, now time.Time) int {
	t, ok := s.tokens[tok]
	switch {
	case tok == "":
		return 41001
	case !ok && !strings.HasPrefix(tok, tokenPrefix):
		return 40014
	case !ok || t.revoked:
		return 40001
	case !now.Before(t.expires):
		return 42001
	}
	return 0
}

// checkCredentials returns the errcode for a token request (stable_token's).
func (s *Server) checkCredentials(grant, appID, secret string) (int, string) {
	switch {
	case grant != "client_credential":
		return 40002, "invalid grant_type"
	case appID != s.AppID:
		return 40013, "invalid appid"
	case secret != s.AppSecret:
		return 40125, "invalid appsecret"
	}
	return 0, ""
}

// tokenPreamble counts the fetch and applies latency and forced failures;
// it returns false when the answer was already written.
func (s *Server) tokenPreamble(w http.ResponseWriter, r *http.Request, api, method string) bool {
	s.mu.Lock()
	s.tokenFetches++
	s.mu.Unlock()
	f, ok := s.takeFailure(r.Context(), api)
	if !ok || !sleep(r.Context(), f.delay) {
		return false
	}
	switch {
	case r.Method != method:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return false
	case writeForced(w, f):
		return false
	case f.code != 0:
		writeErr(w, f.code, "forced failure")
		return false
	}
	return true
}

// serveToken is GET /cgi-bin/token: a new token on every call.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if !s.tokenPreamble(w, r, r.URL.Path, http.MethodGet) {
		return
	}
	q := r.URL.Query()
	if code, msg := s.checkCredentials(q.Get("grant_type"), q.Get("appid"), q.Get("secret")); code != 0 {
		if code == 40125 {
			// /cgi-bin/token answers a wrong secret with 40001, the
			// code of a bad access_token elsewhere.
			code, msg = 40001, "invalid credential, access_token is invalid or not latest"
		}
		writeErr(w, code, msg)
		return
	}
	s.mu.Lock()
	tok := s.issueLocked(wechat.PathToken, time.Now())
	s.mu.Unlock()
	writeJSON(w, map[string]any{"access_token": tok, "expires_in": int64(s.tokenTTL / time.Second)})
}

// serveStableToken is POST /cgi-bin/stable_token: the current token while
// it is valid, a new one when there is none or force_refresh is true.
func (s *Server) serveStableToken(w http.ResponseWriter, r *http.Request) {
	if !s.tokenPreamble(w, r, r.URL.Path, http.MethodPost) {
		return
	}
	var req struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		writeErr(w, 47001, "data format error")
		return
	}
	if code, msg := s.checkCredentials(req.GrantType, req.AppID, req.Secret); code != 0 {
		writeErr(w, code, msg)
		return
	}
	now := time.Now()
	s.mu.Lock()
	tok := s.current[wechat.PathStableToken]
	if req.ForceRefresh || tok == "" || s.checkTokenLocked(tok, now) != 0 {
		tok = s.issueLocked(wechat.PathStableToken, now)
	}
	left := s.tokens[tok].expires.Sub(now)
	s.mu.Unlock()
	writeJSON(w, map[string]any{"access_token": tok, "expires_in": int64(left / time.Second)})
}
