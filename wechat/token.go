package wechat

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/patrickmn/go-cache"
)

// ErrNoCredentials is returned by calls that need an access token when the
// Client has no AppID or AppSecret.
var ErrNoCredentials = errors.New("wechat: AppID and AppSecret are required to call the API")

const (
	tokenKey = "access_token"

	// tokenMargin is how long before WeChat's expires_in a token stops
	// being used, so that no call in flight carries a token that expires
	// on the way; short lives (a stable_token near its end) keep a fifth.
	tokenMargin = 5 * time.Minute

	// tokenLifeUnknown is assumed when an answer gives no expires_in.
	tokenLifeUnknown = 5 * time.Minute
)

// tokenCache holds the one access token of an account. Invalidation
// compares before it deletes, so that a call failing with an old token
// cannot throw away the new one another call just fetched.
type tokenCache struct {
	mu sync.Mutex
	c  *cache.Cache
}

func newTokenCache() *tokenCache {
	return &tokenCache{c: cache.New(cache.NoExpiration, 0)}
}

func (t *tokenCache) get() (string, bool) {
	v, ok := t.c.Get(tokenKey)
	if !ok {
		return "", false
	}
	return v.(string), true
}

func (t *tokenCache) set(tok string, ttl time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.c.Set(tokenKey, tok, ttl)
}

func (t *tokenCache) invalidate(bad string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur, ok := t.get(); ok && cur == bad {
		t.c.Delete(tokenKey)
	}
}

// tokenTTL is how long a token answered with expiresIn seconds is used:
// until shortly before it expires, so it is replaced ahead of expiry.
func tokenTTL(expiresIn int64) time.Duration {
	life := time.Duration(expiresIn) * time.Second
	if expiresIn <= 0 {
		life = tokenLifeUnknown
	}
	return life - min(tokenMargin, life/5)
}

// Token returns a valid access token, fetching one when none is cached.
// However many goroutines ask at once, one fetch is made and all share
// its answer; a caller whose ctx ends stops waiting without cancelling
// the fetch the others wait for.
func (c *Client) Token(ctx context.Context) (string, error) {
	if tok, ok := c.tokens.get(); ok {
		return tok, nil
	}
	ch := c.flight.DoChan(tokenKey, func() (any, error) {
		// A fetch that finished just before this flight began has
		// already filled the cache.
		if tok, ok := c.tokens.get(); ok {
			return tok, nil
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		tok, expiresIn, err := c.fetchToken(fctx)
		if err != nil {
			return "", err
		}
		c.tokens.set(tok, tokenTTL(expiresIn))
		return tok, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// tokenAnswer is the answer of both token APIs.
type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

// fetchToken asks WeChat for a token. stable_token is asked without
// force_refresh: it answers the token that is valid now, which after an
// invalidation elsewhere is the new one, and never invalidates the token
// of another process sharing the account.
func (c *Client) fetchToken(ctx context.Context) (string, int64, error) {
	if c.appID == "" || c.secret == "" {
		return "", 0, ErrNoCredentials
	}
	var ans tokenAnswer
	api := PathStableToken
	var err error
	if c.legacyToken {
		api = PathToken
		q := url.Values{
			"grant_type": {"client_credential"},
			"appid":      {c.appID},
			"secret":     {c.secret},
		}
		err = c.roundTrip(ctx, http.MethodGet, api, q, "", nil, c.timeout, &ans)
	} else {
		body, encErr := encodeJSON(struct {
			GrantType    string `json:"grant_type"`
			AppID        string `json:"appid"`
			Secret       string `json:"secret"`
			ForceRefresh bool   `json:"force_refresh"`
		}{"client_credential", c.appID, c.secret, false})
		if encErr != nil {
			return "", 0, fmt.Errorf("wechat %s: encode: %w", api, encErr)
		}
		err = c.roundTrip(ctx, http.MethodPost, api, nil, "application/json; charset=utf-8", body, c.timeout, &ans)
	}
	if err != nil {
		c.log.Error("access token fetch failed", "api", api, "error", err)
		return "", 0, err
	}
	if ans.AccessToken == "" {
		return "", 0, fmt.Errorf("wechat %s: answer has no access_token", api)
	}
	c.log.Info("access token fetched", "api", api, "expires_in", ans.ExpiresIn)
	return ans.AccessToken, ans.ExpiresIn, nil
}
