package handlers

import (
	"context"
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
}

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
	return nil
}

// receive is the callback proper. It answers at once: the Responder only
// decides and queues, and every outbound call happens after the answer.
func (cb *callback) receive(c echo.Context) error {
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
	if m.FromUserName == "" || m.MsgType == "" {
		// Well-formed but not a callback: every message and event WeChat
		// sends names its sender and type, and without them there is no
		// one to answer and nothing to match.
		return echo.NewHTTPError(http.StatusBadRequest, "not a WeChat callback: FromUserName or MsgType missing")
	}
	if tags := m.UnknownTags(); len(tags) > 0 {
		cb.log.Info("callback carries tags wxreply does not model", append(msgAttrs(m), "tags", tags)...)
	}

	key := m.DedupeKey()
	a, first := cb.inflight.begin(key)
	var reply []byte
	if first {
		reply, err = cb.handle(c.Request().Context(), m, key, a)
	} else {
		cb.log.Info("WeChat retry of a callback still being handled: answering with its answer", msgAttrs(m)...)
		var ok bool
		if reply, err, ok = a.wait(); !ok {
			err = errors.New("the first copy is still being handled")
		}
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

// msgAttrs are the log attributes that identify m. They are built only
// when a line is written: the callback path logs nothing else per request.
func msgAttrs(m *wechat.Message) []any {
	attrs := []any{"openid", m.FromUserName, "msg_type", m.MsgType}
	if m.MsgId != "" {
		attrs = append(attrs, "msg_id", m.MsgId)
	}
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
