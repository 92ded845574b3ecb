package wechat

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// When WeChat refuses access tokens (40001 and its kin) the Client drops
// the token and fetches another, once: that mends a token another
// process replaced. But when WeChat keeps refusing — another system
// fetching tokens with /cgi-bin/token for the account, a reset AppSecret —
// refetching for every message would spend the token API's daily quota
// (about 2,000 calls) in minutes. So a refused token is replaced at most
// once a minute until a call succeeds; a refusal of the replacement
// pauses every authenticated call, with a log line and a metric, for a
// pause that doubles while the refusals go on (1 minute to 30), and one
// refetch is tried when it ends.
const (
	tokenRefetchMin    = time.Minute
	tokenRefusedPause  = time.Minute
	tokenRefusedMaxGap = 30 * time.Minute
)

// TokenRefusedError is returned, without a call, while WeChat's refusals
// of fresh tokens pause the Client's calls. It is retryable: the outbox
// keeps the messages and tries again after Until.
type TokenRefusedError struct {
	Code  int // WeChat's errcode of the last refusal
	Until time.Time
	Err   error // WeChat's answer (an *APIError) that began the pause
}

func (e *TokenRefusedError) Unwrap() error { return e.Err }

func (e *TokenRefusedError) Error() string {
	return fmt.Sprintf("wechat: WeChat refuses the account's access tokens (errcode %d): calls paused until %s; "+
		"check that no other system fetches tokens with /cgi-bin/token for this account and that the AppSecret was not reset",
		e.Code, e.Until.Format(time.RFC3339))
}

// refusals tracks WeChat's refusals of tokens.
type refusals struct {
	mu          sync.Mutex
	lastRefetch time.Time // when a refused token was last replaced
	replaced    string    // that token
	streak      int       // pauses in a row
	pause       *TokenRefusedError
	active      atomic.Bool // a pause or a streak is on: calls check under mu

	count atomic.Int64 // refusals counted, for TokenStats
}

// paused returns the pause in force at now, if any.
func (r *refusals) paused(now time.Time) error {
	if !r.active.Load() {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pause != nil && now.Before(r.pause.Until) {
		return r.pause
	}
	return nil
}

// refused records a refusal of a token at now. It reports whether the
// token may be replaced (refetch), or else the pause that begins.
// replacement says the call already replaced its token once: it is never
// told to refetch, since it makes no third attempt.
//
// A refusal of the token already replaced, while the cache holds another
// or none yet (current: the replacement may be on its way), is one of its
// burst (calls that set out with it before it was replaced): it takes the
// replacement, which costs no further fetch. A replacement that came back
// the same (stable_token answers the token in force) is no replacement.
func (r *refusals) refused(answer *APIError, tok, current string, now time.Time, replacement bool) (refetch bool, pause *TokenRefusedError, began bool) {
	code := answer.Code
	r.count.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active.Store(true)
	if !replacement && tok == r.replaced && current != tok {
		return true, nil, false
	}
	if r.pause != nil && now.Before(r.pause.Until) {
		// A call that set out before the pause began: the pause stands
		// as it is, not lengthened by its own burst.
		return false, r.pause, false
	}
	if !replacement && (r.lastRefetch.IsZero() || now.Sub(r.lastRefetch) >= tokenRefetchMin) {
		r.lastRefetch, r.replaced = now, tok
		return true, nil, false
	}
	gap := tokenRefusedPause
	for i := 0; i < r.streak && gap < tokenRefusedMaxGap; i++ {
		gap *= 2
	}
	r.streak++
	r.pause = &TokenRefusedError{Code: code, Until: now.Add(min(gap, tokenRefusedMaxGap)), Err: answer}
	return false, r.pause, true
}

// accepted records a call WeChat took with its token: the refusals are
// over, and the next one may replace its token at once.
func (r *refusals) accepted() {
	if !r.active.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.streak, r.pause, r.lastRefetch = 0, nil, time.Time{}
	r.active.Store(false)
}

// TokenStats are the Client's token figures since it was made.
type TokenStats struct {
	Fetches       int64 // tokens fetched from WeChat
	FetchFailures int64 // fetches that failed
	Refusals      int64 // calls WeChat answered with a token error
	Paused        bool  // calls are paused after refusals of fresh tokens
}

// TokenStats reports the Client's token figures.
func (c *Client) TokenStats() TokenStats {
	return TokenStats{
		Fetches:       c.tokenFetches.Load(),
		FetchFailures: c.tokenFetchFailures.Load(),
		Refusals:      c.refusals.count.Load(),
		Paused:        c.refusals.paused(c.now()) != nil,
	}
}
