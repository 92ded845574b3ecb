package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// DefaultAPIBase is the WeChat API that ClientOptions.BaseURL defaults to.
const DefaultAPIBase = "https://api.weixin.qq.com"

// API paths. The fake API in wechattest serves the same paths, and its
// failure controls take them as names.
const (
	PathToken        = "/cgi-bin/token"
	PathStableToken  = "/cgi-bin/stable_token"
	PathCustomSend   = "/cgi-bin/message/custom/send"
	PathTemplateSend = "/cgi-bin/message/template/send"
	PathTyping       = "/cgi-bin/message/custom/typing"
	PathMediaUpload  = "/cgi-bin/media/upload"
)

// Default timeouts of one API call; a Sender bounds a message's retries
// on top of them.
const (
	DefaultCallTimeout   = 10 * time.Second
	DefaultUploadTimeout = 60 * time.Second
)

// maxAnswer bounds what is read of an API answer: WeChat's are a few
// hundred bytes, and a proxy's error page must not fill memory.
const maxAnswer = 1 << 20

// ClientOptions configures a Client. AppID and AppSecret are required for
// any call that needs an access token.
type ClientOptions struct {
	BaseURL   string // WECHAT_API_BASE; DefaultAPIBase when empty
	AppID     string
	AppSecret string

	// HTTPClient is shared by every call. Nil means a client with its own
	// keep-alive pool sized for a Sender's workers and no redirects.
	HTTPClient *http.Client

	// MediaStore, when set, keeps the media_ids of uploaded files beyond
	// this Client, so that a restart does not upload every file again.
	MediaStore MediaStore

	// TokenStore, when set, shares one access token among every process
	// of the account: a process without a token reads the one kept
	// there, and only the process holding its fetch lock asks WeChat.
	// Errors of the TokenStore are returned by Token, never answered by
	// a private fetch. Nil means each Client fetches its own.
	TokenStore TokenStore

	// MaxConns is how many calls may be under way at once: the
	// keep-alive pool keeps that many connections, so that a busy outbox
	// does not redial. Default 128.
	MaxConns int

	// UseLegacyToken fetches tokens from the plain /cgi-bin/token, which
	// invalidates every other process's token on each fetch. The default,
	// stable_token, does not.
	UseLegacyToken bool

	// Timeout bounds one API call (DefaultCallTimeout when zero);
	// UploadTimeout bounds one media upload (DefaultUploadTimeout).
	Timeout       time.Duration
	UploadTimeout time.Duration

	Logger *slog.Logger // nil means slog.Default()

	// Now is the clock of the token's refusal pauses; nil means time.Now.
	Now func() time.Time
}

// Client calls the WeChat API for one account. It keeps the access token
// and the media_ids of uploaded files, and is safe for concurrent use.
type Client struct {
	base          string
	appID         string
	secret        string
	http          *http.Client
	legacyToken   bool
	timeout       time.Duration
	uploadTimeout time.Duration
	log           *slog.Logger

	tokens *tokenCache
	now    func() time.Time

	refusals                         refusals
	tokenFetches, tokenFetchFailures atomic.Int64
	media                            *ttlCache[string, mediaEntry] // mediaKey → the upload
	kept                             MediaStore                    // nil: uploads are remembered in memory only
	flight                           singleflight.Group

	tokenStore TokenStore // nil: the token is this Client's alone

	// life ends with Close. Token fetches and uploads shared by several
	// callers outlive any one caller's context, but not this.
	life  context.Context
	close context.CancelFunc
}

// NewClient returns a Client for o.
func NewClient(o ClientOptions) *Client {
	c := &Client{
		base:          strings.TrimRight(o.BaseURL, "/"),
		appID:         o.AppID,
		secret:        o.AppSecret,
		http:          o.HTTPClient,
		legacyToken:   o.UseLegacyToken,
		timeout:       o.Timeout,
		uploadTimeout: o.UploadTimeout,
		log:           o.Logger,
		tokens:        newTokenCache(),
		now:           o.Now,
		tokenStore:    o.TokenStore,
		media:         newTTLCache[string, mediaEntry](),
		kept:          o.MediaStore,
	}
	if c.base == "" {
		c.base = DefaultAPIBase
	}
	if c.http == nil {
		c.http = newHTTPClient(max(o.MaxConns, 128))
	}
	if c.timeout <= 0 {
		c.timeout = DefaultCallTimeout
	}
	if c.uploadTimeout <= 0 {
		c.uploadTimeout = DefaultUploadTimeout
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.life, c.close = context.WithCancel(context.Background())
	return c
}

// Close aborts the token fetches and uploads still running on behalf of
// callers that stopped waiting, and closes idle connections. Call it
// when the Client is no longer used, after the Sender's Shutdown.
func (c *Client) Close() {
	c.close()
	c.http.CloseIdleConnections()
}

// awaitShared waits for the string result of a singleflight call shared
// with other callers, or for ctx: a caller that gives up leaves the call
// running for the others.
func awaitShared(ctx context.Context, ch <-chan singleflight.Result) (string, error) {
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

// shared returns the context of a call made on behalf of every caller
// waiting for it: ctx's values, none of its cancellation, the timeout,
// and the Client's life.
func (c *Client) shared(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	stop := context.AfterFunc(c.life, cancel)
	return sctx, func() { stop(); cancel() }
}

// newHTTPClient keeps maxConns idle connections per host, one per call
// the outbox may have under way (net/http keeps 2 by default, which would
// redial under load),
// and never follows redirects, so an access_token in the query cannot
// travel to another host.
func newHTTPClient(maxConns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			DialContext: (&net.Dialer{
				Timeout:   5 * time.Second,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          maxConns,
			MaxIdleConnsPerHost:   maxConns,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 15 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// CloseIdleConnections closes the pool's idle connections, for shutdown.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// HTTPError is an answer from the API, or a proxy in front of it, with an
// HTTP status other than 200. 5xx answers are worth retrying.
type HTTPError struct {
	API        string
	StatusCode int
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("wechat %s: http status %d", e.API, e.StatusCode)
}

// BadAnswerError is an HTTP 200 answer that is not the JSON WeChat
// sends: an empty or cut body, or a page from a proxy or gateway in
// between. Such an answer most likely never came from WeChat, so it is
// retried like a network error.
type BadAnswerError struct {
	API string
	Err error // what was wrong with it
}

func (e *BadAnswerError) Error() string {
	return fmt.Sprintf("wechat %s: malformed answer: %v", e.API, e.Err)
}

func (e *BadAnswerError) Unwrap() error { return e.Err }

// apiStatus is the part every API answer may carry.
type apiStatus struct {
	ErrCode int    `json:"errcode"`
	ErrMsg  string `json:"errmsg"`
}

// encodeJSON writes v without HTML escaping: WeChat shows "\u003ca" to the
// user instead of a link when a text's <a href> is escaped.
func encodeJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// postJSON sends v to api with the access token and decodes the answer
// into out (which may be nil).
func (c *Client) postJSON(ctx context.Context, api string, v, out any) error {
	body, err := encodeJSON(v)
	if err != nil {
		return fmt.Errorf("wechat %s: encode: %w", api, err)
	}
	return c.callWithToken(ctx, api, nil, "application/json; charset=utf-8", body, c.timeout, out)
}

// callWithToken makes one authenticated call. An answer that the token is
// invalid, expired or missing drops that token (here and in the
// TokenStore), fetches a new one and repeats the call once; a refusal of
// the replacement pauses the Client's calls (token_refused.go) and is
// returned as the retryable *TokenRefusedError.
func (c *Client) callWithToken(ctx context.Context, api string, query url.Values, contentType string, body []byte, timeout time.Duration, out any) error {
	if err := c.refusals.paused(c.now()); err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		tok, err := c.Token(ctx)
		if err != nil {
			return err
		}
		q := url.Values{}
		for k, v := range query {
			q[k] = v
		}
		q.Set("access_token", tok)
		// The API's reads (menu/get, …) take no body and are GETs.
		method := http.MethodPost
		if body == nil {
			method = http.MethodGet
		}
		err = c.roundTrip(ctx, method, api, q, contentType, body, timeout, out)
		var ae *APIError
		isAPI := errors.As(err, &ae)
		if isAPI && IsTokenError(ae.Code) {
			current, _ := c.tokens.get()
			refetch, pause, began := c.refusals.refused(ae, tok, current, c.now(), attempt > 0)
			if refetch {
				c.log.Warn("wechat rejected the access token; fetching a new one", "api", api, "errcode", ae.Code)
				if err := c.dropToken(ctx, tok); err != nil {
					return err
				}
				continue
			}
			if pause != nil {
				if began {
					c.log.Error("WeChat refuses the access tokens it issued: pausing every call instead of fetching tokens for each message",
						"api", api, "errcode", ae.Code, "until", pause.Until.Format(time.RFC3339),
						"hint", "another system fetching tokens with /cgi-bin/token for this account, or a reset AppSecret")
				}
				return pause
			}
		} else if err == nil || isAPI {
			c.refusals.accepted()
		}
		if isAPI {
			ae.Message = strings.ReplaceAll(ae.Message, tok, "REDACTED")
		}
		return err
	}
}

// roundTrip makes one HTTP call and turns its answer into out, an
// *APIError, an *HTTPError or a transport error with secrets scrubbed.
func (c *Client) roundTrip(ctx context.Context, method, api string, query url.Values, contentType string, body []byte, timeout time.Duration, out any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := c.base + api
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("wechat %s: %w", api, scrubError(err))
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("wechat %s: %w", api, scrubError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return fmt.Errorf("wechat %s: read answer: %w", api, scrubError(err))
	}
	if resp.StatusCode != http.StatusOK {
		return &HTTPError{API: api, StatusCode: resp.StatusCode}
	}
	if len(data) > maxAnswer {
		return &BadAnswerError{API: api, Err: fmt.Errorf("longer than %d bytes", maxAnswer)}
	}
	var st apiStatus
	if err := json.Unmarshal(data, &st); err != nil {
		return &BadAnswerError{API: api, Err: err}
	}
	if st.ErrCode != 0 {
		return &APIError{Code: st.ErrCode, Message: st.ErrMsg, API: api}
	}
	if out != nil {
		// Not a BadAnswerError: errcode 0 was read, so the call took
		// effect, and a retry could send the message twice.
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("wechat %s: decode answer: %w", api, err)
		}
	}
	return nil
}

// secretInURL matches the query parameters that carry credentials.
var secretInURL = regexp.MustCompile(`((?:access_token|secret)=)[^&\s"']*`)

// scrubURL replaces credentials in a URL or a message quoting one.
func scrubURL(s string) string { return secretInURL.ReplaceAllString(s, "${1}REDACTED") }

// scrubError removes credentials from err: net/http quotes the full URL,
// query and all, in *url.Error. The *url.Error is edited in place so that
// no unwrapping reveals the token either.
func scrubError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = scrubURL(ue.URL)
	}
	return &scrubbedError{err: err}
}

// scrubbedError keeps the chain for errors.Is/As and scrubs the text of
// anything further down that might quote the URL.
type scrubbedError struct{ err error }

func (e *scrubbedError) Error() string { return scrubURL(e.err.Error()) }
func (e *scrubbedError) Unwrap() error { return e.err }
