package wechat

import (
	"bytes"
	"net/url"
)

// CallbackQuery returns the query string WeChat puts on a callback POST:
// signature, timestamp, nonce and openid, and with encrypt set (safe or
// compatible mode) also encrypt_type=aes and msg_signature over it. It is
// how replay tools and tests sign a captured message exactly as WeChat does.
func CallbackQuery(token, timestamp, nonce, openid, encrypt string) url.Values {
	q := url.Values{}
	q.Set("signature", Signature(token, timestamp, nonce))
	q.Set("timestamp", timestamp)
	q.Set("nonce", nonce)
	if openid != "" {
		q.Set("openid", openid)
	}
	if encrypt != "" {
		q.Set("encrypt_type", "aes")
		q.Set("msg_signature", Signature(token, timestamp, nonce, encrypt))
	}
	return q
}

// SafeModeBody is the body WeChat posts in safe mode: the account and the
// ciphertext, nothing else.
func SafeModeBody(toUserName, encrypt string) []byte {
	var b bytes.Buffer
	b.WriteString("<xml><ToUserName>")
	writeCDATA(&b, toUserName)
	b.WriteString("</ToUserName><Encrypt>")
	writeCDATA(&b, encrypt)
	b.WriteString("</Encrypt></xml>")
	return b.Bytes()
}
