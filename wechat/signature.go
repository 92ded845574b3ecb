package wechat

import (
	"crypto/sha1"
	"crypto/subtle"
	"encoding/hex"
	"slices"
	"strings"
)

// Signature is WeChat's callback signature: the hex SHA-1 of parts sorted
// lexically (byte-wise) and concatenated. The URL check signs token,
// timestamp and nonce; encrypted messages add the Encrypt value.
func Signature(parts ...string) string {
	// Sort a copy: a caller's slice passed with parts... must not change.
	sorted := slices.Clone(parts)
	slices.Sort(sorted)
	sum := sha1.Sum([]byte(strings.Join(sorted, "")))
	return hex.EncodeToString(sum[:])
}

// VerifySignature reports whether signature is the callback signature of
// token, timestamp and nonce, as sent with every callback request.
// An empty signature or token never verifies: with an empty token anyone
// could compute the signature.
func VerifySignature(token, signature, timestamp, nonce string) bool {
	if token == "" || signature == "" {
		return false
	}
	return equalConstantTime(Signature(token, timestamp, nonce), signature)
}

// VerifyMsgSignature reports whether msgSignature is the signature of
// token, timestamp, nonce and the Encrypt value of an encrypted message.
// An empty signature or token never verifies.
func VerifyMsgSignature(token, msgSignature, timestamp, nonce, encrypt string) bool {
	if token == "" || msgSignature == "" {
		return false
	}
	return equalConstantTime(Signature(token, timestamp, nonce, encrypt), msgSignature)
}

// equalConstantTime compares without leaking through timing how long a
// prefix of a forged signature was right.
func equalConstantTime(want, got string) bool {
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}
