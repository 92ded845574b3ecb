package wechat

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"
)

// addCaptureSeeds seeds f with every capture under test/testdata.
func addCaptureSeeds(f *testing.F, add func(name string, body []byte)) {
	f.Helper()
	for _, mode := range []string{"plain", "safe", "compat"} {
		for _, name := range plainCaptures(f) {
			add(filepath.Join(mode, name), readCapture(f, mode, name))
		}
	}
}

func FuzzParseMessage(f *testing.F) {
	addCaptureSeeds(f, func(_ string, body []byte) { f.Add(body) })
	for _, s := range []string{
		`<!DOCTYPE x [<!ENTITY a "b">]><xml>&a;</xml>`,
		`<xml><Content><![CDATA[a]]]]><![CDATA[>b]]></Content></xml>`,
		`<xml><CreateTime>1</CreateTime><Unknown><A/></Unknown></xml>`,
		`<?xml version="1.0"?><xml/>`,
		`<xml></xml><xml></xml>`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := ParseMessage(body)
		if err != nil {
			if m != nil {
				t.Fatalf("message returned with error %v", err)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDoctype) {
				t.Fatalf("error %v is neither ErrMalformed nor ErrDoctype", err)
			}
			return
		}
		if m == nil {
			t.Fatal("nil message without error")
		}
		if m.XMLName.Local != "xml" {
			t.Fatalf("accepted root <%s>", m.XMLName.Local)
		}
		// The derived values must not panic on anything ParseMessage accepts.
		_, _, _, _ = m.DedupeKey(), m.Scene(), m.OpensWindow(), m.UnknownTags()
		_ = m.EventName()
	})
}

func FuzzDecrypt(f *testing.F) {
	addCaptureSeeds(f, func(name string, body []byte) {
		if m, err := ParseMessage(body); err == nil && m.Encrypt != "" {
			f.Add([]byte(m.Encrypt))
		}
	})
	f.Add([]byte(officialEncrypt))
	f.Add([]byte(""))
	f.Add([]byte("AAAAAAAAAAAAAAAAAAAAAA=="))
	c := mustCipher(f, testAESKey, testAppID)
	f.Fuzz(func(t *testing.T, in []byte) {
		// As the Encrypt value itself: mostly base64 and length checks.
		checkDecrypt(t, c, string(in))
		// As plaintext blocks under the right key, to reach the padding,
		// length and AppID checks with arbitrary content.
		if n := len(in) / 16 * 16; n > 0 {
			checkDecrypt(t, c, rawEncrypt(c, in[:n]))
		}
	})
}

func checkDecrypt(t *testing.T, c *Cipher, encrypt string) {
	t.Helper()
	msg, err := c.Decrypt(encrypt)
	if err != nil {
		if msg != nil {
			t.Fatalf("message returned with error %v", err)
		}
		if !errors.Is(err, ErrBadCiphertext) && !errors.Is(err, ErrAppIDMismatch) {
			t.Fatalf("error %v is neither ErrBadCiphertext nor ErrAppIDMismatch", err)
		}
		return
	}
	// Whatever decrypts must re-encrypt to something that decrypts back.
	again, err := c.Encrypt(msg)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := c.Decrypt(again); err != nil || !bytes.Equal(back, msg) {
		t.Fatalf("re-encryption round trip: %q, %v; want %q", back, err, msg)
	}
}

func FuzzVerifySignature(f *testing.F) {
	f.Add(officialToken, officialSignature, officialTimestamp, officialNonce, officialEncrypt)
	f.Add(officialToken, officialMsgSig, officialTimestamp, officialNonce, officialEncrypt)
	f.Add("", "", "", "", "")
	f.Add(testToken, "not hex", "1732520001", "n", "e")
	f.Fuzz(func(t *testing.T, token, sig, timestamp, nonce, encrypt string) {
		got := VerifySignature(token, sig, timestamp, nonce)
		want := token != "" && sig != "" && sig == Signature(token, timestamp, nonce)
		if got != want {
			t.Fatalf("VerifySignature(%q, %q, %q, %q) = %v, want %v", token, sig, timestamp, nonce, got, want)
		}
		gotMsg := VerifyMsgSignature(token, sig, timestamp, nonce, encrypt)
		wantMsg := token != "" && sig != "" && sig == Signature(token, timestamp, nonce, encrypt)
		if gotMsg != wantMsg {
			t.Fatalf("VerifyMsgSignature(%q, %q, %q, %q, %q) = %v, want %v", token, sig, timestamp, nonce, encrypt, gotMsg, wantMsg)
		}
		// The genuine signatures always verify for a non-empty token.
		if token != "" {
			if !VerifySignature(token, Signature(nonce, token, timestamp), timestamp, nonce) {
				t.Fatal("genuine signature rejected")
			}
			if !VerifyMsgSignature(token, Signature(encrypt, nonce, timestamp, token), timestamp, nonce, encrypt) {
				t.Fatal("genuine msg_signature rejected")
			}
		}
	})
}

func FuzzEncryptRoundTrip(f *testing.F) {
	addCaptureSeeds(f, func(_ string, body []byte) { f.Add(body, testAppID) })
	f.Add([]byte{}, "wx")
	f.Add(bytes.Repeat([]byte{0x20}, 32), "wx2c2769f8efd9abc2")
	f.Fuzz(func(t *testing.T, msg []byte, appID string) {
		c, err := NewCipher(testAESKey, appID)
		if appID == "" {
			if err == nil {
				t.Fatal("NewCipher accepted an empty AppID")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		enc, err := c.Encrypt(msg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Decrypt(enc)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("round trip gave %q, %v; want %q", got, err, msg)
		}
	})
}
