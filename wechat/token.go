package wechat

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
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

	// tokenLifeUnknown is assumed when an answer gives no expires_in;
	// tokenLifeMax bounds an absurd one (WeChat's is 7200 seconds).
	tokenLifeUnknown = 5 * time.Minute
	tokenLifeMax     = 24 * time.Hour
	tokenLifeEnding  = time.Second // expires_in 0

	// After a failed fetch, callers get that failure back without a new
	// call for a pause that doubles with each failure in a row: the
	// token APIs have a daily quota (about 2,000 calls for
	// /cgi-bin/token), and a queue of a thousand replies must not spend
	// a thousand calls finding out that the server's IP is not on the
	// whitelist. Answers that need an operator (bad secret, IP not
	// whitelisted) pause longer than ones that may pass by themselves.
	tokenPauseMin       = time.Second
	tokenPauseTransient = 30 * time.Second
	tokenPauseFinal     = 5 * time.Minute

	// With a TokenStore, the process holding the fetch lock holds it for
	// one call's timeout and this margin, for the store's own calls
	// around the fetch; the lock of a process that died ends with it.
	tokenLockMargin = 5 * time.Second

	// tokenPollInterval is how often a process waiting for another's
	// fetch reads the TokenStore again, and tries the lock.
	tokenPollInterval = 40 * time.Millisecond
)

// TokenStore keeps one access token for every process of an account (the
// Redis store), so that a cold start of several instances fetches it once.
type TokenStore interface {
	// SharedToken returns the token kept and how long it is still to be
	// used; ok is false when none is kept.
	SharedToken(ctx context.Context) (tok string, ttl time.Duration, ok bool, err error)
	// LockTokenFetch makes this process the one that fetches, for at most
	// hold; ok is false while another process holds the lock. unlock gives
	// the lock back if it is still this process's.
	LockTokenFetch(ctx context.Context, hold time.Duration) (unlock func(), ok bool, err error)
	// PutSharedToken keeps tok for ttl.
	PutSharedToken(ctx context.Context, tok string, ttl time.Duration) error
	// DropSharedToken forgets tok if it is still the token kept: a process
	// that got a token error with an old token must not throw away the new
	// one another process fetched.
	DropSharedToken(ctx context.Context, tok string) error
}

// tokenCache holds the one access token of an account, or the last
// failure to fetch one. Invalidation compares before it deletes, so that
// a call failing with an old token cannot throw away the new one another
// call just fetched.
type tokenCache struct {
	mu sync.Mutex
	c  *ttlCache[string, string] // tokenKey → the token

	// The last failed fetch, given back to callers until failUntil.
	failErr   error
	failUntil time.Time
	failures  int // failed fetches in a row
}

func newTokenCache() *tokenCache {
	return &tokenCache{c: newTTLCache[string, string]()}
}

func (t *tokenCache) get() (string, bool) {
	return t.c.Get(tokenKey)
}

func (t *tokenCache) set(tok string, ttl time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.c.Set(tokenKey, tok, ttl)
	t.failErr, t.failUntil, t.failures = nil, time.Time{}, 0
}

func (t *tokenCache) invalidate(bad string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur, ok := t.get(); ok && cur == bad {
		t.c.Delete(tokenKey)
	}
}

// failure returns the failure callers get back at now instead of a new
// fetch, if any.
func (t *tokenCache) failure(now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failErr != nil && now.Before(t.failUntil) {
		return t.failErr
	}
	return nil
}

// fail remembers a failed fetch and returns how long it is given back.
func (t *tokenCache) fail(err error, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failures++
	limit := tokenPauseFinal
	if Retryable(err) {
		limit = tokenPauseTransient
	}
	pause := tokenPauseMin
	for i := 1; i < t.failures && pause < limit; i++ {
		pause *= 2
	}
	pause = min(pause, limit)
	t.failErr, t.failUntil = err, now.Add(pause)
	return pause
}

// tokenTTL is how long a token answered with expiresIn seconds is used:
// until shortly before it expires, so it is replaced ahead of expiry.
// Without expires_in (given false) a short life is assumed; zero or less
// means the token is about to expire (stable_token answers what is left
// of the current one), so it serves only for a moment.
func tokenTTL(expiresIn int64, given bool) time.Duration {
	life := tokenLifeUnknown
	switch {
	case !given:
	case expiresIn <= 0:
		return tokenLifeEnding
	default:
		life = time.Duration(min(expiresIn, int64(tokenLifeMax/time.Second))) * time.Second
	}
	return life - min(tokenMargin, life/5)
}

// Token returns a valid access token, fetching one when none is cached.
// However many goroutines ask at once, one fetch is made and all share
// its answer; a caller whose ctx ends stops waiting without cancelling
// the fetch the others wait for. A failed fetch is given back, without
// a new call, for a pause that grows while fetches keep failing.
//
// With a TokenStore, a Client without a token first reads the one kept
// there; only when none is kept does it fetch, and then only while it
// holds the store's fetch lock: the other processes wait for the token it
// puts there (see sharedToken).
func (c *Client) Token(ctx context.Context) (string, error) {
	if tok, ok := c.tokens.get(); ok {
		return tok, nil
	}
	// With a TokenStore, the pause is checked in the flight, after the
	// store: another process may have fetched a token meanwhile.
	if c.tokenStore == nil {
		if err := c.tokens.failure(time.Now()); err != nil {
			return "", err
		}
	}
	ch := c.flight.DoChan(tokenKey, func() (any, error) {
		// A fetch that finished just before this flight began has
		// already filled the cache, or failed.
		if tok, ok := c.tokens.get(); ok {
			return tok, nil
		}
		if c.tokenStore != nil {
			// Long enough to wait out the lock of a process that
			// died, then fetch; a caller may stop waiting sooner.
			fctx, cancel := c.shared(ctx, c.tokenLockHold()+c.timeout)
			defer cancel()
			return c.sharedToken(fctx)
		}
		if err := c.tokens.failure(time.Now()); err != nil {
			return "", err
		}
		fctx, cancel := c.shared(ctx, c.timeout)
		defer cancel()
		tok, _, err := c.fetchAndCache(fctx)
		return tok, err
	})
	return awaitShared(ctx, ch)
}

// fetchAndCache fetches a token and caches it, or starts or lengthens the
// failure pause.
func (c *Client) fetchAndCache(ctx context.Context) (string, time.Duration, error) {
	tok, ttl, err := c.fetchToken(ctx)
	if errors.Is(err, ErrNoCredentials) || c.life.Err() != nil {
		return "", 0, err // no call was made, or Close cut it off: nothing to pause for
	}
	if err != nil {
		c.tokenFetchFailures.Add(1)
		pause := c.tokens.fail(err, time.Now())
		c.log.Error("access token fetch failed; callers get this error until the pause ends",
			"error", err, "pause", pause)
		return "", 0, err
	}
	c.tokenFetches.Add(1)
	c.tokens.set(tok, ttl)
	return tok, ttl, nil
}

// tokenLockHold is how long the TokenStore's fetch lock is held at most:
// the fetch's timeout and a margin.
func (c *Client) tokenLockHold() time.Duration { return c.timeout + tokenLockMargin }

// storeError is an error of the TokenStore, as Token returns it.
func storeError(err error) error {
	return fmt.Errorf("wechat: access token: shared store: %w", err)
}

// sharedToken is Token's flight with a TokenStore, until ctx ends: the
// token kept in the store if there is one, else a fetch while holding
// the store's fetch lock, else, while another process holds the lock, a
// wait for the token it puts there (or for its lock to end, when it died
// or failed, and then this process tries the lock itself).
//
// An error of the store is returned: falling back to a fetch of this
// process alone would spend the token API's quota once per instance,
// and with the legacy /cgi-bin/token take the token away from the
// others. Nor does it start a failure pause: calls of the store cost no
// quota, the flight already makes them one at a time, and a short outage
// of the store should end its errors as soon as it is over.
func (c *Client) sharedToken(ctx context.Context) (string, error) {
	if c.appID == "" || c.secret == "" {
		return "", ErrNoCredentials // no fetch could follow: leave the store alone
	}
	var tick *time.Ticker
	for {
		tok, ok, err := c.keptToken(ctx)
		if err != nil || ok {
			return tok, err
		}
		// The pause after failed fetches is this process's: the others
		// find out for themselves, once per pause each.
		if err := c.tokens.failure(time.Now()); err != nil {
			return "", err
		}
		unlock, locked, err := c.tokenStore.LockTokenFetch(ctx, c.tokenLockHold())
		if err != nil {
			return "", storeError(err)
		}
		if locked {
			return c.fetchShared(ctx, unlock)
		}
		if tick == nil {
			c.log.Debug("waiting for another process to fetch the access token")
			tick = time.NewTicker(tokenPollInterval)
			defer tick.Stop()
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return "", fmt.Errorf("wechat: access token: waiting for another process to fetch it: %w", ctx.Err())
		}
	}
}

// keptToken reads the TokenStore and caches the token kept there for
// what is left of its time.
func (c *Client) keptToken(ctx context.Context) (string, bool, error) {
	tok, ttl, ok, err := c.tokenStore.SharedToken(ctx)
	if err != nil {
		return "", false, storeError(err)
	}
	if !ok || tok == "" || ttl <= 0 {
		return "", false, nil
	}
	c.tokens.set(tok, ttl)
	c.log.Debug("access token read from the shared store", "cached_for", ttl)
	return tok, true, nil
}

// fetchShared fetches a token while this process holds the TokenStore's
// fetch lock, and puts it there. The lock is given back either way: after
// a failed fetch the other processes try for themselves rather than
// wait for the lock to end.
func (c *Client) fetchShared(ctx context.Context, unlock func()) (string, error) {
	defer unlock()
	// Nothing is put after the lock ended, as far as this process's
	// clock goes.
	ctx, cancel := context.WithTimeout(ctx, c.tokenLockHold())
	defer cancel()
	// Another process may have put a token between the read and the lock.
	if tok, ok, err := c.keptToken(ctx); err != nil || ok {
		return tok, err
	}
	tok, ttl, err := c.fetchAndCache(ctx)
	if err != nil {
		return "", err
	}
	if err := c.tokenStore.PutSharedToken(ctx, tok, ttl); err != nil {
		// The token is fetched and valid: it serves this process rather
		// than being thrown away for another fetch. The others fetch
		// theirs once the store works again, which with the legacy API
		// ends this one; the token error then drops it here.
		c.log.Warn("access token fetched but not kept in the shared store; other processes will fetch their own",
			"error", redact(err, tok).Error())
	}
	return tok, nil
}

// dropToken forgets tok after WeChat rejected it: in the TokenStore,
// unless another process has put a newer token there meanwhile, and
// then in this Client. The store goes first, so that a flight starting
// in between does not read the rejected token back from it; an error
// of the store is returned, after the token is dropped here.
func (c *Client) dropToken(ctx context.Context, tok string) error {
	var err error
	if c.tokenStore != nil {
		dctx, cancel := context.WithTimeout(ctx, c.timeout)
		err = c.tokenStore.DropSharedToken(dctx, tok)
		cancel()
	}
	c.tokens.invalidate(tok)
	if err != nil {
		return storeError(redact(err, tok))
	}
	return nil
}

// redact keeps a token that a store's error might quote out of its text;
// errors.Is and As still see the error.
func redact(err error, tok string) error {
	return &redactedError{err: err, tok: tok}
}

type redactedError struct {
	err error
	tok string
}

func (e *redactedError) Error() string {
	if e.tok == "" {
		return e.err.Error()
	}
	return strings.ReplaceAll(e.err.Error(), e.tok, "REDACTED")
}

func (e *redactedError) Unwrap() error { return e.err }

// tokenAnswer is the answer of both token APIs.
type tokenAnswer struct {
	AccessToken string         `json:"access_token"`
	ExpiresIn   *flexibleInt64 `json:"expires_in"` // nil when missing
}

// fetchToken asks WeChat for a token. stable_token is asked without
// force_refresh: it answers the token that is valid now, which after an
// invalidation elsewhere is the new one, and never invalidates the token
// of another process sharing the account.
func (c *Client) fetchToken(ctx context.Context) (string, time.Duration, error) {
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
		var ae *APIError
		if errors.As(err, &ae) {
			// WeChat's errmsg is not known to quote the secret; make
			// sure no log line ever does.
			ae.Message = strings.ReplaceAll(ae.Message, c.secret, "REDACTED")
			// The errcode stays reachable with errors.As; the text says
			// what the operator has to do about it.
			if hint := tokenHint(ae.Code); hint != "" {
				return "", 0, fmt.Errorf("wechat: access token: %w (%s)", err, hint)
			}
		}
		return "", 0, fmt.Errorf("wechat: access token: %w", err)
	}
	if ans.AccessToken == "" {
		return "", 0, fmt.Errorf("wechat: access token: %w", &BadAnswerError{API: api, Err: errors.New("no access_token")})
	}
	var expiresIn int64
	if ans.ExpiresIn != nil {
		expiresIn = int64(*ans.ExpiresIn)
	}
	ttl := tokenTTL(expiresIn, ans.ExpiresIn != nil)
	c.log.Info("access token fetched", "api", api, "expires_in", expiresIn, "cached_for", ttl)
	return ans.AccessToken, ttl, nil
}

// tokenHint says what to do about a token API's errcode, where WeChat's
// errmsg does not.
func tokenHint(code int) string {
	switch code {
	case ErrCodeInvalidCredential, ErrCodeInvalidAppSecret:
		return "check WECHAT_APPSECRET: it is wrong or was reset in the MP console"
	case ErrCodeInvalidAppID:
		return "check WECHAT_APPID"
	case ErrCodeIPNotWhitelisted:
		return "add this server's outgoing IP to the account's API IP whitelist in the MP console"
	case ErrCodeDailyQuota, ErrCodeRateLimited:
		return "the token API's quota is spent for now"
	}
	return ""
}
