package wechat

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Errors of message encryption. Decrypt wraps them with detail; callers
// test with errors.Is. None of them ever carries the key.
var (
	// ErrInvalidAESKey: the EncodingAESKey is not 43 base64 characters.
	ErrInvalidAESKey = errors.New("wechat: invalid EncodingAESKey")
	// ErrBadCiphertext: the Encrypt value is not base64, not whole AES
	// blocks, badly padded or not WeChat's plaintext layout — a wrong key
	// usually shows up as bad padding.
	ErrBadCiphertext = errors.New("wechat: bad ciphertext")
	// ErrAppIDMismatch: the message decrypted but names another account.
	ErrAppIDMismatch = errors.New("wechat: AppID mismatch")
)

const (
	encodingAESKeyLen = 43
	aesKeyLen         = 32
	// padBlock is WeChat's PKCS#7 block: 32 bytes, not AES's 16.
	padBlock = 32
	// randomLen and lengthLen frame the message inside the plaintext.
	randomLen = 16
	lengthLen = 4
	// maxShownAppID keeps a garbage AppID from flooding an error message.
	maxShownAppID = 64
)

// Cipher encrypts and decrypts the messages of one account in compatible
// and safe mode (WeChat's WXBizMsgCrypt scheme). It is safe for concurrent
// use. Build it with NewCipher.
type Cipher struct {
	block cipher.Block
	iv    []byte
	appID string
	// rand supplies the 16 random bytes of each plaintext; nil means
	// crypto/rand. Tests set it to make fixtures reproducible.
	rand io.Reader
}

// NewCipher returns the Cipher for the account's 43-character
// EncodingAESKey and its AppID, which every decrypted message must end with.
func NewCipher(encodingAESKey, appID string) (*Cipher, error) {
	if len(encodingAESKey) != encodingAESKeyLen {
		return nil, fmt.Errorf("%w: must be %d characters, got %d", ErrInvalidAESKey, encodingAESKeyLen, len(encodingAESKey))
	}
	// Not Strict: WeChat's keys are 43 random characters, so the unused
	// low bits of the last one are often set (the official sample key is
	// such a key) and every SDK ignores them.
	key, err := base64.StdEncoding.DecodeString(encodingAESKey + "=")
	if err != nil {
		var pos base64.CorruptInputError
		if errors.As(err, &pos) {
			return nil, fmt.Errorf("%w: not base64 at character %d", ErrInvalidAESKey, int64(pos)+1)
		}
		return nil, fmt.Errorf("%w: not base64", ErrInvalidAESKey)
	}
	if len(key) != aesKeyLen {
		return nil, fmt.Errorf("%w: decodes to %d bytes, want %d", ErrInvalidAESKey, len(key), aesKeyLen)
	}
	if appID == "" {
		return nil, errors.New("wechat: an AppID is required to check encrypted messages")
	}
	block, err := aes.NewCipher(key)
	if err != nil { // unreachable with 32 bytes; kept so no error is ignored
		return nil, fmt.Errorf("%w: %v", ErrInvalidAESKey, err)
	}
	return &Cipher{block: block, iv: key[:aes.BlockSize], appID: appID}, nil
}

// AppID returns the account AppID the Cipher checks and writes.
func (c *Cipher) AppID() string { return c.appID }

// Decrypt opens the Encrypt value of a message: base64, AES-256-CBC,
// WeChat's 32-byte PKCS#7 padding, then random(16) ‖ length(4, big
// endian) ‖ message ‖ AppID. It returns the message, and fails with
// ErrBadCiphertext or ErrAppIDMismatch; it never panics on any input.
func (c *Cipher) Decrypt(encrypt string) ([]byte, error) {
	data, err := base64.StdEncoding.DecodeString(encrypt)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64: %v", ErrBadCiphertext, err)
	}
	if len(data) == 0 || len(data)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a whole number of AES blocks", ErrBadCiphertext, len(data))
	}
	// Decrypt in place: data is ours, freshly decoded.
	cipher.NewCBCDecrypter(c.block, c.iv).CryptBlocks(data, data)

	plain, err := unpad(data)
	if err != nil {
		return nil, err
	}
	if len(plain) < randomLen+lengthLen {
		return nil, fmt.Errorf("%w: plaintext of %d bytes is shorter than its header", ErrBadCiphertext, len(plain))
	}
	rest := plain[randomLen+lengthLen:]
	// uint64 so a huge length cannot wrap around on 32-bit platforms.
	n := uint64(binary.BigEndian.Uint32(plain[randomLen:]))
	if n > uint64(len(rest)) {
		return nil, fmt.Errorf("%w: message length %d exceeds the %d bytes left", ErrBadCiphertext, n, len(rest))
	}
	msg, appID := rest[:n], rest[n:]
	if string(appID) != c.appID {
		return nil, fmt.Errorf("%w: message is for %s", ErrAppIDMismatch, shortQuote(appID))
	}
	return msg, nil
}

// unpad strips WeChat's PKCS#7 padding, checking every pad byte.
func unpad(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty plaintext", ErrBadCiphertext)
	}
	pad := int(b[len(b)-1])
	if pad < 1 || pad > padBlock || pad > len(b) {
		return nil, fmt.Errorf("%w: bad padding", ErrBadCiphertext)
	}
	for _, p := range b[len(b)-pad:] {
		if int(p) != pad {
			return nil, fmt.Errorf("%w: bad padding", ErrBadCiphertext)
		}
	}
	return b[:len(b)-pad], nil
}

// Encrypt seals msg the way WeChat does and returns the base64 Encrypt
// value. The 16 leading bytes come from crypto/rand.
func (c *Cipher) Encrypt(msg []byte) (string, error) {
	if uint64(len(msg)) > 1<<32-1 {
		return "", fmt.Errorf("wechat: message of %d bytes is too long to encrypt", len(msg))
	}
	size := randomLen + lengthLen + len(msg) + len(c.appID)
	pad := padBlock - size%padBlock // 1..32: a full block when aligned
	buf := make([]byte, size+pad)

	r := c.rand
	if r == nil {
		r = rand.Reader
	}
	if _, err := io.ReadFull(r, buf[:randomLen]); err != nil {
		return "", fmt.Errorf("wechat: reading random bytes: %w", err)
	}
	binary.BigEndian.PutUint32(buf[randomLen:], uint32(len(msg)))
	n := randomLen + lengthLen
	n += copy(buf[n:], msg)
	n += copy(buf[n:], c.appID)
	copy(buf[n:], bytes.Repeat([]byte{byte(pad)}, pad))

	cipher.NewCBCEncrypter(c.block, c.iv).CryptBlocks(buf, buf)
	return base64.StdEncoding.EncodeToString(buf), nil
}

// EncryptReply wraps a passive reply for an encrypted callback: it
// encrypts reply and signs it with token, timestamp and nonce, giving
// <xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>.
func (c *Cipher) EncryptReply(token string, reply []byte, timestamp, nonce string) ([]byte, error) {
	enc, err := c.Encrypt(reply)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Grow(len(enc) + 200)
	b.WriteString("<xml><Encrypt>")
	writeCDATA(&b, enc)
	b.WriteString("</Encrypt><MsgSignature>")
	writeCDATA(&b, Signature(token, timestamp, nonce, enc))
	b.WriteString("</MsgSignature><TimeStamp>")
	writeText(&b, timestamp)
	b.WriteString("</TimeStamp><Nonce>")
	writeCDATA(&b, nonce)
	b.WriteString("</Nonce></xml>")
	return b.Bytes(), nil
}

// shortQuote quotes an untrusted value for an error message, cut short.
func shortQuote(b []byte) string {
	if len(b) > maxShownAppID {
		return strconv.Quote(string(b[:maxShownAppID])) + "…"
	}
	return strconv.Quote(string(b))
}
