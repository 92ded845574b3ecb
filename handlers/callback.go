package handlers

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wxreply/wxreply/wechat"
)

// callback serves the server URL typed into the MP console.
type callback struct {
	token     string
	cipher    *wechat.Cipher
	responder Responder
	log       *slog.Logger
	inflight  *inflight
	now       func() time.Time
	maxSkew   time.Duration // 0: timestamps not checked
	metrics   *Metrics      // nil: none
	// Each kind of refusal (and the unknown-tags line) is logged at most
	// once a minute, with how many went without a line: an outsider
	// replaying refused requests at full speed does not fill the log (the
	// metric counts every one).
	staleLog, reusedLog, plainLog, tagsLog sampled
}

// ErrQueryReused is what a Responder's error wraps when the callback's
// signed query was already used for another body: the callback is
// answered 403.
var ErrQueryReused = errors.New("signed query already used for another body")

// SignedQuery binds a callback's signed query to its body, for the
// Responder to record with the callback (see delivery.Request.Query).
type SignedQuery struct {
	Key      string    // signature, timestamp and nonce
	BodyHash []byte    // SHA-256 of the body
	Until    time.Time // while the timestamp is fresh
	At       time.Time // the signed timestamp; zero when it is not a number
}

// UnboundQueryTTL is how long a query is bound to its body when
// timestamps are not checked (WXREPLY_MAX_CLOCK_SKEW=0).
const UnboundQueryTTL = 10 * time.Minute

const contentTypeXML = echo.MIMETextXMLCharsetUTF8

// verifyURL answers WeChat's URL verification: echostr verbatim when the
// signature holds.
func (cb *callback) verifyURL(c echo.Context) error {
	if err := cb.checkSignature(c); err != nil {
		return err
	}
	// echostr is echoed as sent: keep browsers from sniffing it into HTML.
	c.Response().Header().Set(echo.HeaderXContentTypeOptions, "nosniff")
	return c.String(http.StatusOK, c.QueryParam("echostr"))
}

// checkSignature verifies the plain `signature` every request carries:
// 401 when it is missing, 403 when it is wrong.
func (cb *callback) checkSignature(c echo.Context) error {
	q := c.QueryParams()
	sig := q.Get("signature")
	if sig == "" || q.Get("timestamp") == "" || q.Get("nonce") == "" {
		return echo.NewHTTPError(http.StatusUnauthorized, "missing signature, timestamp or nonce")
	}
	if !wechat.VerifySignature(cb.token, sig, q.Get("timestamp"), q.Get("nonce")) {
		return echo.NewHTTPError(http.StatusForbidden, "invalid signature")
	}
	if err := cb.checkFresh(q.Get("timestamp")); err != nil {
		return err
	}
	if c.Request().Method == http.MethodGet {
		c.Set(signedKey, true) // the request log may name the query's openid
	}
	return nil
}

// checkFresh refuses a timestamp further than maxSkew from the clock: a
// signed URL seen once (a proxy's log, a screenshot) is good for minutes,
// not for ever.
func (cb *callback) checkFresh(timestamp string) error {
	if cb.maxSkew <= 0 {
		return nil
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return echo.NewHTTPError(http.StatusForbidden, "timestamp is not a number")
	}
	off := cb.now().Sub(time.Unix(ts, 0))
	if off <= cb.maxSkew && off >= -cb.maxSkew {
		return nil
	}
	cb.metrics.refuse(RefusedStale)
	if skipped, ok := cb.staleLog.take(cb.now()); ok {
		cb.log.Warn("callback refused: its timestamp is too far from this server's clock; check the clock (NTP) if WeChat's own callbacks are refused",
			"offset", off.Round(time.Second).String(), "max_clock_skew", cb.maxSkew.String(), "refused_without_a_line", skipped)
	}
	return echo.NewHTTPError(http.StatusForbidden, "timestamp too old or too far ahead")
}

// signedQuery is the binding of this request's query to body.
func (cb *callback) signedQuery(c echo.Context, body []byte) SignedQuery {
	q := c.QueryParams()
	h := sha256.Sum256(body)
	until := cb.now().Add(UnboundQueryTTL)
	var at time.Time
	if ts, err := strconv.ParseInt(q.Get("timestamp"), 10, 64); err == nil {
		at = time.Unix(ts, 0)
		if cb.maxSkew > 0 {
			until = at.Add(cb.maxSkew)
		}
	}
	return SignedQuery{Key: q.Get("signature") + ":" + q.Get("timestamp") + ":" + q.Get("nonce"), BodyHash: h[:], Until: until, At: at}
}

// receive is the callback proper. It answers at once: the Responder only
// decides and queues, and every outbound call happens after the answer.
// What it learns goes in the callback's Note, which the request log
// writes as the callback's one line.
func (cb *callback) receive(c echo.Context) error {
	st := &callbackState{Context: c.Request().Context()}
	c.Set(callbackEchoKey, st)
	if err := cb.checkSignature(c); err != nil {
		return err
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	m, encrypted, err := cb.open(c, body)
	if err != nil {
		return err
	}
	st.msg = m
	if m.FromUserName == "" || m.MsgType == "" {
		// Well-formed but not a callback: every message and event WeChat
		// sends names its sender and type, and without them there is no
		// one to answer and nothing to match.
		return echo.NewHTTPError(http.StatusBadRequest, "not a WeChat callback: FromUserName or MsgType missing")
	}
	if tags := m.UnknownTags(); len(tags) > 0 {
		if _, ok := cb.tagsLog.take(cb.now()); ok {
			// Once a minute, the first 20: a body an outsider wrote may
			// carry thousands, and WeChat's new fields show up in the
			// first line.
			cb.log.Info("callback carries tags wxreply does not model", append(msgAttrs(m), "tags", tags[:min(len(tags), 20)], "count", len(tags))...)
		}
	}

	key := m.DedupeKey()
	a, first := cb.inflight.begin(key)
	var reply []byte
	if first {
		if !encrypted {
			// msg_signature covers an encrypted body: another body
			// under the same query fails it. A plaintext body is covered
			// by nothing but this binding, kept in the store.
			st.query = cb.signedQuery(c, body)
		}
		reply, err = cb.handle(st, m, key, a)
	} else {
		st.note.Outcome = OutcomeWaited
		cb.log.Info("WeChat retry of a callback still being handled: answering with its answer", msgAttrs(m)...)
		var ok bool
		if reply, err, ok = a.wait(); !ok {
			err = errors.New("the first copy is still being handled")
		}
	}
	if errors.Is(err, ErrQueryReused) {
		cb.metrics.refuse(RefusedReused)
		if skipped, ok := cb.reusedLog.take(cb.now()); ok {
			cb.log.Warn("callback refused: its signed URL was already used for another message; someone may be replaying a leaked callback URL",
				append(msgAttrs(m), "refused_without_a_line", skipped)...)
		}
		return echo.NewHTTPError(http.StatusForbidden, "this signed URL was already used for another message")
	}
	if err != nil {
		// Nothing was recorded: WeChat must not be told success, and
		// tries again.
		return echo.NewHTTPError(http.StatusServiceUnavailable, "cannot record the message now; retry").SetInternal(err)
	}
	return cb.answer(c, m, reply, encrypted)
}

// handle gives the first copy of a callback to the Responder and returns
// the passive reply's plaintext XML, or nil to answer success. It records
// the outcome on a, for the retries waiting, even when the Responder
// panics: a retry waiting on a then gets an answer at once instead of a
// timeout.
func (cb *callback) handle(ctx context.Context, m *wechat.Message, key string, a *answer) (reply []byte, err error) {
	done := false
	defer func() {
		if !done {
			err = errors.New("the callback's handling panicked")
		}
		cb.inflight.finish(key, a, reply, err)
	}()
	reply, err = cb.responder.Respond(ctx, m)
	done = true
	return reply, err
}

// answer writes the HTTP answer: success, or the passive reply, encrypted
// when this copy came encrypted. Each copy is encrypted and signed for
// itself, so a retry is answered in its own mode with its own nonce.
func (cb *callback) answer(c echo.Context, m *wechat.Message, reply []byte, encrypted bool) error {
	if reply == nil {
		return c.String(http.StatusOK, "success")
	}
	if encrypted {
		ts := strconv.FormatInt(cb.now().Unix(), 10)
		sealed, err := cb.cipher.EncryptReply(cb.token, reply, ts, c.QueryParam("nonce"))
		if err != nil {
			cb.log.Error("passive reply not sent", append(msgAttrs(m), "error", err)...)
			return c.String(http.StatusOK, "success")
		}
		reply = sealed
	}
	return c.Blob(http.StatusOK, contentTypeXML, reply)
}

// msgAttrs are the log attributes that identify m, for the lines a
// callback writes besides its own (see appendCallbackAttrs). They are
// built only when a line is written.
func msgAttrs(m *wechat.Message) []any {
	attrs := []any{"openid", m.FromUserName, "msg_type", m.MsgType, "msg_id", MsgIDOf(m)}
	if m.Event != "" {
		attrs = append(attrs, "event", m.Event)
	}
	return attrs
}

// readBody reads at most MaxBodyBytes: 413 beyond that.
func readBody(c echo.Context) ([]byte, error) {
	r := http.MaxBytesReader(c.Response(), c.Request().Body, MaxBodyBytes)
	body, err := io.ReadAll(r)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge, "body over 64 KiB")
	case err != nil:
		return nil, echo.NewHTTPError(http.StatusBadRequest, "reading body failed")
	}
	return body, nil
}

// open parses the body and, for encrypt_type=aes, checks msg_signature and
// decrypts it. encrypted reports whether the answer must be encrypted.
func (cb *callback) open(c echo.Context, body []byte) (m *wechat.Message, encrypted bool, err error) {
	outer, err := wechat.ParseMessage(body)
	if err != nil {
		return nil, false, badXML(err)
	}
	if c.QueryParam("encrypt_type") != "aes" && outer.Encrypt == "" {
		if cb.cipher != nil {
			// The plain signature covers the token, timestamp and nonce,
			// not the body: with a key configured only a body under
			// msg_signature is WeChat's.
			cb.metrics.refuse(RefusedPlaintext)
			if skipped, ok := cb.plainLog.take(cb.now()); ok {
				cb.log.Warn("plaintext callback refused: an EncodingAESKey is configured, so only encrypted callbacks are taken; if the MP console is in plaintext mode, switch it to compatible or safe mode (see the README)",
					"refused_without_a_line", skipped)
			}
			return nil, false, echo.NewHTTPError(http.StatusForbidden, "plaintext callback refused: this server takes encrypted callbacks only")
		}
		return outer, false, nil
	}
	if cb.cipher == nil {
		if outer.MsgType != "" {
			// Compatible mode carries the plaintext too: use it, and answer
			// in plaintext, which WeChat accepts in that mode.
			return outer, false, nil
		}
		cb.log.Warn("encrypted callback refused: no EncodingAESKey configured (set WECHAT_ENCODING_AES_KEY, or switch the MP console to plaintext mode)")
		return nil, false, echo.NewHTTPError(http.StatusBadRequest, "encrypted message, but no EncodingAESKey configured")
	}
	if outer.Encrypt == "" {
		return nil, false, echo.NewHTTPError(http.StatusBadRequest, "encrypt_type=aes but no <Encrypt> element")
	}
	q := c.QueryParams()
	msgSig := q.Get("msg_signature")
	if msgSig == "" {
		return nil, false, echo.NewHTTPError(http.StatusUnauthorized, "missing msg_signature")
	}
	if !wechat.VerifyMsgSignature(cb.token, msgSig, q.Get("timestamp"), q.Get("nonce"), outer.Encrypt) {
		return nil, false, echo.NewHTTPError(http.StatusForbidden, "invalid msg_signature")
	}
	plain, err := cb.cipher.Decrypt(outer.Encrypt)
	if errors.Is(err, wechat.ErrAppIDMismatch) {
		cb.log.Warn("encrypted callback refused: AppID inside does not match WECHAT_APPID")
		return nil, false, echo.NewHTTPError(http.StatusForbidden, "message is for another AppID")
	}
	if err != nil {
		return nil, false, echo.NewHTTPError(http.StatusBadRequest, "cannot decrypt message").SetInternal(err)
	}
	inner, err := wechat.ParseMessage(plain)
	if err != nil {
		return nil, false, badXML(err)
	}
	return inner, true, nil
}

func badXML(err error) error {
	if errors.Is(err, wechat.ErrDoctype) {
		return echo.NewHTTPError(http.StatusBadRequest, "XML with DOCTYPE or entities is refused")
	}
	return echo.NewHTTPError(http.StatusBadRequest, "malformed XML").SetInternal(err)
}
