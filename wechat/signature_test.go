package wechat

import (
	"crypto/sha1"
	"encoding/hex"
	"slices"
	"testing"
)

// Vectors from WeChat's official WXBizMsgCrypt sample and the SDKs that
// test against it (token "spamtest", AppID "wx2c2769f8efd9abc2").
const (
	officialToken     = "spamtest"
	officialTimestamp = "1409735669"
	officialNonce     = "1320562132"
	officialSignature = "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"
	officialMsgSig    = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
	officialEncrypt   = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
)

// sha1Hex is the reference: SHA-1 of a concatenation written out by hand.
func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestSignature(t *testing.T) {
	tests := []struct {
		name  string
		parts []string
		want  string
	}{
		{"pywe-sign callback vector", []string{"789", "456", "123"}, "f7c3bc1d808e04732adf679965ccc34ca7ae3441"},
		{"official URL vector", []string{officialToken, officialTimestamp, officialNonce}, officialSignature},
		{"official URL vector, other order", []string{officialNonce, officialToken, officialTimestamp}, officialSignature},
		{"official msg_signature vector", []string{officialToken, officialTimestamp, officialNonce, officialEncrypt}, officialMsgSig},
		{"byte-wise order: upper case first", []string{"b", "a", "B"}, sha1Hex("Bab")},
		{"byte-wise order: prefix first", []string{"ab", "a", "abc"}, sha1Hex("aababc")},
		{"byte-wise order: UTF-8 after ASCII", []string{"你", "z", "0"}, sha1Hex("0z你")},
		{"empty parts", []string{"", "x", ""}, sha1Hex("x")},
		{"no parts", nil, sha1Hex("")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Signature(tt.parts...); got != tt.want {
				t.Errorf("Signature(%q) = %s, want %s", tt.parts, got, tt.want)
			}
		})
	}
}

func TestSignatureLeavesCallerSliceAlone(t *testing.T) {
	parts := []string{"c", "a", "b"}
	Signature(parts...)
	if !slices.Equal(parts, []string{"c", "a", "b"}) {
		t.Errorf("Signature reordered the caller's slice: %q", parts)
	}
}

func TestVerifySignature(t *testing.T) {
	tests := []struct {
		name                         string
		token, sig, timestamp, nonce string
		want                         bool
	}{
		{"official vector", officialToken, officialSignature, officialTimestamp, officialNonce, true},
		{"wrong token", "other", officialSignature, officialTimestamp, officialNonce, false},
		{"other timestamp", officialToken, officialSignature, "1409735670", officialNonce, false},
		{"other nonce", officialToken, officialSignature, officialTimestamp, "1320562133", false},
		{"one digit off", officialToken, "16120ec1b8dbb870f510d87ce6bc2463eae6ca1b", officialTimestamp, officialNonce, false},
		{"truncated", officialToken, officialSignature[:39], officialTimestamp, officialNonce, false},
		{"extended", officialToken, officialSignature + "0", officialTimestamp, officialNonce, false},
		{"upper-case hex", officialToken, "16120EC1B8DBB870F510D87CE6BC2463EAE6CA1A", officialTimestamp, officialNonce, false},
		{"empty signature", officialToken, "", officialTimestamp, officialNonce, false},
		{"empty token, matching signature", "", Signature("", "1", "2"), "1", "2", false},
		{"all empty", "", "", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VerifySignature(tt.token, tt.sig, tt.timestamp, tt.nonce); got != tt.want {
				t.Errorf("VerifySignature = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestVerifyMsgSignature(t *testing.T) {
	tests := []struct {
		name                                  string
		token, sig, timestamp, nonce, encrypt string
		want                                  bool
	}{
		{"official vector", officialToken, officialMsgSig, officialTimestamp, officialNonce, officialEncrypt, true},
		{"URL signature is not the msg_signature", officialToken, officialSignature, officialTimestamp, officialNonce, officialEncrypt, false},
		{"tampered Encrypt", officialToken, officialMsgSig, officialTimestamp, officialNonce, "A" + officialEncrypt[1:], false},
		{"empty Encrypt", officialToken, officialMsgSig, officialTimestamp, officialNonce, "", false},
		{"wrong token", "spamtesT", officialMsgSig, officialTimestamp, officialNonce, officialEncrypt, false},
		{"empty signature", officialToken, "", officialTimestamp, officialNonce, officialEncrypt, false},
		{"empty token, matching signature", "", Signature("", "1", "2", "e"), "1", "2", "e", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VerifyMsgSignature(tt.token, tt.sig, tt.timestamp, tt.nonce, tt.encrypt); got != tt.want {
				t.Errorf("VerifyMsgSignature = %v, want %v", got, tt.want)
			}
		})
	}
}
