// Package tools holds wxreply's command-line tools around the server:
// replay (post captured callbacks signed as WeChat would), send (push a
// message through a running server's API) and the sandbox (chat with the
// rules in a terminal against a fake WeChat API). main parses the flags;
// everything a tool does, and is tested for, is here.
package tools

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// maxResponse bounds what is read of a server's answer: a passive reply
// is a few KiB.
const maxResponse = 1 << 20

// exampleCallbackURL is what the errors about a callback URL suggest.
const exampleCallbackURL = "http://127.0.0.1:8080/wechat"

// defaultTimeout is longer than WeChat's five seconds, so that a slow
// server shows up as a slow answer rather than as an error.
const defaultTimeout = 15 * time.Second

// Callback posts callbacks to a wxreply server exactly as WeChat's servers
// do: signed in the query with the Token and, with a Cipher, encrypted in
// safe mode. It decrypts and checks encrypted passive replies. The zero
// value is not usable: URL and Token are required.
type Callback struct {
	URL    string         // the server's callback URL, e.g. http://127.0.0.1:8080/wechat
	Token  string         // the Token both sides share
	Cipher *wechat.Cipher // nil: plaintext mode
	Client *http.Client   // nil: a client with a 15s timeout
	Now    func() time.Time
}

// CallbackResult is a server's answer to one callback.
type CallbackResult struct {
	StatusCode int
	Status     string // e.g. "200 OK"
	Body       []byte // the body as answered
	Elapsed    time.Duration

	// Reply is the passive reply XML: the body itself in plaintext mode,
	// the decrypted message when the answer was encrypted; nil when the
	// answer is not a reply ("success", empty, an error).
	Reply []byte
	// Encrypted reports an encrypted answer; SignatureOK whether its
	// MsgSignature was right.
	Encrypted   bool
	SignatureOK bool
}

// OK reports a 2xx answer.
func (r *CallbackResult) OK() bool { return r.StatusCode >= 200 && r.StatusCode < 300 }

// Post signs msg (a callback's XML as WeChat posts it in plaintext mode)
// with a fresh timestamp and nonce, encrypts it when c has a Cipher, and
// posts it. A message that is already encrypted (a safe or compatible
// mode capture) is posted as it is, signed over its Encrypt value.
func (c *Callback) Post(ctx context.Context, msg []byte) (*CallbackResult, error) {
	parsed, perr := wechat.ParseMessage(msg)
	var openid, toUser, encrypt string
	if perr == nil {
		openid, toUser, encrypt = parsed.FromUserName, parsed.ToUserName, parsed.Encrypt
	}
	body := msg
	switch {
	case encrypt != "" && openid == "" && c.Cipher != nil:
		// Safe mode capture: the openid is inside.
		if plain, err := c.Cipher.Decrypt(encrypt); err == nil {
			if inner, err := wechat.ParseMessage(plain); err == nil {
				openid = inner.FromUserName
			}
		}
	case encrypt == "" && c.Cipher != nil:
		if perr != nil {
			return nil, fmt.Errorf("cannot encrypt a message that does not parse: %w", perr)
		}
		enc, err := c.Cipher.Encrypt(msg)
		if err != nil {
			return nil, err
		}
		encrypt, body = enc, wechat.SafeModeBody(toUser, enc)
	}

	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	timestamp := strconv.FormatInt(now().Unix(), 10)
	nonce := newNonce()
	u, err := checkURL("callback URL", c.URL, exampleCallbackURL)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	for k, v := range wechat.CallbackQuery(c.Token, timestamp, nonce, openid, encrypt) {
		q[k] = v
	}
	u.RawQuery = q.Encode()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "text/xml")
	req.Header.Set("User-Agent", "Mozilla/4.0 (wxreply replay)")
	client := c.Client
	if client == nil {
		client = &http.Client{Timeout: defaultTimeout}
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return nil, unreachable(u, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	r := &CallbackResult{
		StatusCode: resp.StatusCode,
		Status:     resp.Status,
		Body:       answer,
		Elapsed:    time.Since(start),
	}
	if r.OK() {
		if err := c.openReply(r); err != nil {
			return r, err
		}
	}
	return r, nil
}

// encryptedReply is a passive reply to an encrypted callback.
type encryptedReply struct {
	Encrypt      string `xml:"Encrypt"`
	MsgSignature string `xml:"MsgSignature"`
	TimeStamp    string `xml:"TimeStamp"`
	Nonce        string `xml:"Nonce"`
}

// openReply fills r.Reply from an answer that is a passive reply.
func (c *Callback) openReply(r *CallbackResult) error {
	trimmed := bytes.TrimSpace(r.Body)
	if !bytes.HasPrefix(trimmed, []byte("<xml")) {
		return nil
	}
	var enc encryptedReply
	if err := xml.Unmarshal(trimmed, &enc); err != nil || enc.Encrypt == "" {
		r.Reply = trimmed
		return nil
	}
	r.Encrypted = true
	r.SignatureOK = wechat.VerifyMsgSignature(c.Token, enc.MsgSignature, enc.TimeStamp, enc.Nonce, enc.Encrypt)
	if c.Cipher == nil {
		return errors.New("the answer is encrypted, but no EncodingAESKey is set to read it")
	}
	plain, err := c.Cipher.Decrypt(enc.Encrypt)
	if err != nil {
		return fmt.Errorf("decrypting the answer: %w", err)
	}
	r.Reply = plain
	return nil
}

// unreachable explains a request that got no answer. It names the server
// without the query, which for a callback is a signature, a timestamp and
// a nonce: noise to the reader of the error.
func unreachable(u *url.URL, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	where := u.Scheme + "://" + u.Host + u.Path
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot reach %s: %w (is the server running?)", where, err)
	}
	return fmt.Errorf("cannot reach %s: %w", where, err)
}

// isDialError reports an error of connecting at all, after which no other
// request to the same server can do better.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// checkURL accepts an absolute http or https URL.
func checkURL(flag, s, example string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s %q: want an http:// or https:// URL, e.g. %s", flag, s, example)
	}
	return u, nil
}

// newNonce is a random decimal string like the nonces WeChat sends.
func newNonce() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return strconv.FormatUint(uint64(binary.BigEndian.Uint32(b[:])), 10)
}
