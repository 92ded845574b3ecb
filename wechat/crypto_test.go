package wechat

import (
	"bytes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
)

// The official sample's EncodingAESKey. Its last character has unused low
// bits set, so it also proves the key is decoded the lenient way WeChat's
// own code does.
const officialAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

// officialPlain is what officialEncrypt decrypts to (AppID wx2c2769f8efd9abc2).
const officialPlain = "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n" +
	"<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n" +
	"<CreateTime>1409735668</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n" +
	"<Content><![CDATA[abcdteT]]></Content>\n<MsgId>6054768590064713728</MsgId>\n</xml>"

func mustCipher(t testing.TB, key, appID string) *Cipher {
	t.Helper()
	c, err := NewCipher(key, appID)
	if err != nil {
		t.Fatalf("NewCipher: %v", err)
	}
	return c
}

func TestNewCipher(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		appID   string
		wantErr error // nil: valid; errNoAppID: any error
	}{
		{"official sample key", officialAESKey, "wx2c2769f8efd9abc2", nil},
		{"random-looking key", "TNwHN28RXXoyVxkMCUEqKuCL08eBpCKgWZTkWNVnGLu", "wxtest", nil},
		{"42 characters", officialAESKey[:42], "wx", ErrInvalidAESKey},
		{"44 characters", officialAESKey + "H", "wx", ErrInvalidAESKey},
		{"43 with trailing padding", officialAESKey[:42] + "=", "wx", ErrInvalidAESKey},
		{"not base64", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF!", "wx", ErrInvalidAESKey},
		{"URL-safe alphabet", "abcdefghijklmnopqrstuvwxyz0123456789ABCDE-_", "wx", ErrInvalidAESKey},
		{"empty key", "", "wx", ErrInvalidAESKey},
		{"no AppID", officialAESKey, "", errNoAppID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewCipher(tt.key, tt.appID)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("NewCipher: %v", err)
			case tt.wantErr == nil:
				if c.AppID() != tt.appID {
					t.Errorf("AppID() = %q, want %q", c.AppID(), tt.appID)
				}
			case err == nil:
				t.Fatalf("NewCipher accepted it")
			case tt.wantErr != errNoAppID && !errors.Is(err, tt.wantErr):
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if err != nil && len(tt.key) > 8 && strings.Contains(err.Error(), tt.key[:8]) {
				t.Errorf("error %q shows the key", err)
			}
		})
	}
}

// errNoAppID stands for "some error" in TestNewCipher's table.
var errNoAppID = errors.New("any error")

func TestDecryptOfficialVector(t *testing.T) {
	c := mustCipher(t, officialAESKey, "wx2c2769f8efd9abc2")
	got, err := c.Decrypt(officialEncrypt)
	if err != nil {
		t.Fatalf("Decrypt: %v", err)
	}
	if string(got) != officialPlain {
		t.Errorf("Decrypt = %q\nwant %q", got, officialPlain)
	}

	other := mustCipher(t, officialAESKey, "wxb11529c136998cb6")
	if _, err := other.Decrypt(officialEncrypt); !errors.Is(err, ErrAppIDMismatch) {
		t.Errorf("Decrypt for another AppID: %v, want ErrAppIDMismatch", err)
	}
}

// TestEncryptOfficialVector reproduces the ciphertexts of the official
// Java sample's test, which fixes the random prefix to "aaaabbbbccccdddd".
func TestEncryptOfficialVector(t *testing.T) {
	tests := []struct {
		name, msg, want string
	}{
		{"short", "我是中文abcd123", "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="},
		{"reply XML", "<xml><ToUserName><![CDATA[oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw]]></ToUserName><FromUserName><![CDATA[gh_7f083739789a]]></FromUserName><CreateTime>1407743423</CreateTime><MsgType><![CDATA[video]]></MsgType><Video><MediaId><![CDATA[eYJ1MbwPRJtOvIEabaxHs7TX2D-HV71s79GUxqdUkjm6Gs2Ed1KF3ulAOA9H1xG0]]></MediaId><Title><![CDATA[testCallBackReplyVideo]]></Title><Description><![CDATA[testCallBackReplyVideo]]></Description></Video></xml>",
			"jn1L23DB+6ELqJ+6bruv23M2GmYfkv0xBh2h+XTBOKVKcgDFHle6gqcZ1cZrk3e1qjPQ1F4RsLWzQRG9udbKWesxlkupqcEcW7ZQweImX9+wLMa0GaUzpkycA8+IamDBxn5loLgZpnS7fVAbExOkK5DYHBmv5tptA9tklE/fTIILHR8HLXa5nQvFb3tYPKAlHF3rtTeayNf0QuM+UW/wM9enGIDIJHF7CLHiDNAYxr+r+OrJCmPQyTy8cVWlu9iSvOHPT/77bZqJucQHQ04sq7KZI27OcqpQNSto2OdHCoTccjggX5Z9Mma0nMJBU+jLKJ38YB1fBIz+vBzsYjrTmFQ44YfeEuZ+xRTQwr92vhA9OxchWVINGC50qE/6lmkwWTwGX9wtQpsJKhP+oS7rvTY8+VdzETdfakjkwQ5/Xka042OlUb1/slTwo4RscuQ+RdxSGvDahxAJ6+EAjLt9d8igHngxIbf6YyqqROxuxqIeIch3CssH/LqRs+iAcILvApYZckqmA7FNERspKA5f8GoJ9sv8xmGvZ9Yrf57cExWtnX8aCMMaBropU/1k+hKP5LVdzbWCG0hGwx/dQudYR/eXp3P0XxjlFiy+9DMlaFExWUZQDajPkdPrEeOwofJb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCipher(t, officialAESKey, "wxb11529c136998cb6")
			c.rand = strings.NewReader("aaaabbbbccccdddd")
			got, err := c.Encrypt([]byte(tt.msg))
			if err != nil {
				t.Fatalf("Encrypt: %v", err)
			}
			if got != tt.want {
				t.Errorf("Encrypt = %s\nwant %s", got, tt.want)
			}
			back, err := c.Decrypt(tt.want)
			if err != nil || string(back) != tt.msg {
				t.Errorf("Decrypt(official) = %q, %v; want %q", back, err, tt.msg)
			}
		})
	}
}

// rawEncrypt encrypts plain (whole AES blocks) with c's key and IV and no
// padding of its own, to build ciphertexts a correct encoder never makes.
func rawEncrypt(c *Cipher, plain []byte) string {
	buf := bytes.Clone(plain)
	cipher.NewCBCEncrypter(c.block, c.iv).CryptBlocks(buf, buf)
	return base64.StdEncoding.EncodeToString(buf)
}

// frame lays out WeChat's plaintext with a length field of n and the given
// tail (message ‖ AppID ‖ padding).
func frame(n uint32, tail string) []byte {
	b := make([]byte, randomLen+lengthLen, randomLen+lengthLen+len(tail))
	copy(b, "0123456789abcdef")
	binary.BigEndian.PutUint32(b[randomLen:], n)
	return append(b, tail...)
}

func dropLastBlock(encrypt string) string {
	raw, _ := base64.StdEncoding.DecodeString(encrypt)
	return base64.StdEncoding.EncodeToString(raw[:len(raw)-16])
}

func pad(n int) string { return strings.Repeat(string(rune(n)), n) }

func TestDecryptRejects(t *testing.T) {
	const appID = "wxtest0000000001"
	c := mustCipher(t, officialAESKey, appID)
	// 20 header + 5 message + 16 AppID = 41 bytes, 23 of padding make 64.
	good := frame(5, "hello"+appID+pad(23))
	if msg, err := c.Decrypt(rawEncrypt(c, good)); err != nil || string(msg) != "hello" {
		t.Fatalf("well-formed frame: %q, %v", msg, err)
	}
	wrongKey := mustCipher(t, "TNwHN28RXXoyVxkMCUEqKuCL08eBpCKgWZTkWNVnGLu", appID)

	tests := []struct {
		name    string
		encrypt string
		want    error
	}{
		{"not base64", "@@@@", ErrBadCiphertext},
		{"empty", "", ErrBadCiphertext},
		{"15 bytes", base64.StdEncoding.EncodeToString(make([]byte, 15)), ErrBadCiphertext},
		{"17 bytes", base64.StdEncoding.EncodeToString(make([]byte, 17)), ErrBadCiphertext},
		{"one block, pad 32 longer than the data", rawEncrypt(c, bytes.Repeat([]byte{32}, 16)), ErrBadCiphertext},
		{"pad byte 0", rawEncrypt(c, append(good[:63:63], 0)), ErrBadCiphertext},
		{"pad byte 33", rawEncrypt(c, frame(5, "hello"+appID+strings.Repeat("\x21", 23))), ErrBadCiphertext},
		{"pad bytes disagree", rawEncrypt(c, frame(5, "hello"+appID+"\x16"+strings.Repeat("\x17", 22))), ErrBadCiphertext},
		{"shorter than the header", rawEncrypt(c, []byte("0123456789abcdef"+pad(16))), ErrBadCiphertext},
		{"length beyond the data", rawEncrypt(c, frame(45, "hello"+appID+pad(23))), ErrBadCiphertext},
		{"length 2^32-1", rawEncrypt(c, frame(0xFFFFFFFF, "hello"+appID+pad(23))), ErrBadCiphertext},
		{"AppID of another account", rawEncrypt(c, frame(5, "hello"+"wxtest0000000002"+pad(23))), ErrAppIDMismatch},
		{"length swallows the AppID", rawEncrypt(c, frame(21, "hello"+appID+pad(23))), ErrAppIDMismatch},
		{"AppID with extra tail", rawEncrypt(c, frame(4, "hello"+appID+pad(23))), ErrAppIDMismatch},
		{"encrypted with another key", func() string { s, _ := wrongKey.Encrypt([]byte("hello")); return s }(), nil},
		{"official vector without its last block", dropLastBlock(officialEncrypt), ErrBadCiphertext},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := c.Decrypt(tt.encrypt)
			if err == nil {
				t.Fatalf("Decrypt accepted it: %q", msg)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
			if tt.want == nil && !errors.Is(err, ErrBadCiphertext) && !errors.Is(err, ErrAppIDMismatch) {
				t.Errorf("error %v is neither ErrBadCiphertext nor ErrAppIDMismatch", err)
			}
			if msg != nil {
				t.Errorf("Decrypt returned %q with its error", msg)
			}
		})
	}
}

// TestEncryptPadding checks the layout of every padding length, 1 to 32,
// by decrypting without Decrypt's checks.
func TestEncryptPadding(t *testing.T) {
	const appID = "wxtest0000000001"
	c := mustCipher(t, officialAESKey, appID)
	seen := map[int]bool{}
	for n := 0; n <= 64; n++ {
		msg := bytes.Repeat([]byte{'x'}, n)
		enc, err := c.Encrypt(msg)
		if err != nil {
			t.Fatalf("Encrypt(%d bytes): %v", n, err)
		}
		raw, _ := base64.StdEncoding.DecodeString(enc)
		if len(raw)%padBlock != 0 {
			t.Fatalf("%d-byte message: ciphertext of %d bytes is not whole 32-byte blocks", n, len(raw))
		}
		cipher.NewCBCDecrypter(c.block, c.iv).CryptBlocks(raw, raw)
		p := int(raw[len(raw)-1])
		wantPad := padBlock - (randomLen+lengthLen+n+len(appID))%padBlock
		if p != wantPad || !bytes.Equal(raw[len(raw)-p:], bytes.Repeat([]byte{byte(p)}, p)) {
			t.Fatalf("%d-byte message: padding %d, want %d bytes of %d", n, p, wantPad, wantPad)
		}
		if got := binary.BigEndian.Uint32(raw[randomLen:]); got != uint32(n) {
			t.Fatalf("%d-byte message: length field %d", n, got)
		}
		seen[p] = true
		back, err := c.Decrypt(enc)
		if err != nil || !bytes.Equal(back, msg) {
			t.Fatalf("%d-byte message: round trip gave %q, %v", n, back, err)
		}
	}
	if len(seen) != padBlock {
		t.Errorf("exercised %d padding lengths, want all %d", len(seen), padBlock)
	}
}

func TestEncryptIsRandomized(t *testing.T) {
	c := mustCipher(t, officialAESKey, "wxtest0000000001")
	a, errA := c.Encrypt([]byte("same"))
	b, errB := c.Encrypt([]byte("same"))
	if errA != nil || errB != nil {
		t.Fatalf("Encrypt: %v, %v", errA, errB)
	}
	if a == b {
		t.Errorf("two encryptions of one message are identical: the random prefix is not random")
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestEncryptRandomFailure(t *testing.T) {
	c := mustCipher(t, officialAESKey, "wxtest0000000001")
	for name, r := range map[string]io.Reader{"error": failingReader{}, "short": strings.NewReader("only8byt")} {
		c.rand = r
		if enc, err := c.Encrypt([]byte("x")); err == nil {
			t.Errorf("%s: Encrypt succeeded without random bytes: %s", name, enc)
		}
	}
}

// encryptedReply is the envelope EncryptReply writes.
type encryptedReply struct {
	XMLName      xml.Name `xml:"xml"`
	Encrypt      string
	MsgSignature string
	TimeStamp    string
	Nonce        string
}

func TestEncryptReply(t *testing.T) {
	c := mustCipher(t, officialAESKey, "wxtest0000000001")
	reply := []byte("<xml><Content><![CDATA[你好]]></Content></xml>")
	tests := []struct {
		name, timestamp, nonce string
	}{
		{"plain", "1732520001", "1320562132"},
		{"nonce needing CDATA splitting", "1732520001", "a]]>b<&"},
		{"timestamp needing escaping", "1<2&3", "n"},
		{"empty nonce", "1732520001", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := c.EncryptReply("wxreplytoken", reply, tt.timestamp, tt.nonce)
			if err != nil {
				t.Fatalf("EncryptReply: %v", err)
			}
			if !bytes.HasPrefix(out, []byte("<xml><Encrypt><![CDATA[")) || !bytes.HasSuffix(out, []byte("</Nonce></xml>")) {
				t.Errorf("envelope shape: %s", out)
			}
			var env encryptedReply
			if err := xml.Unmarshal(out, &env); err != nil {
				t.Fatalf("envelope does not parse: %v\n%s", err, out)
			}
			if env.TimeStamp != tt.timestamp || env.Nonce != tt.nonce {
				t.Errorf("TimeStamp, Nonce = %q, %q; want %q, %q", env.TimeStamp, env.Nonce, tt.timestamp, tt.nonce)
			}
			if !VerifyMsgSignature("wxreplytoken", env.MsgSignature, env.TimeStamp, env.Nonce, env.Encrypt) {
				t.Errorf("MsgSignature %s does not verify", env.MsgSignature)
			}
			got, err := c.Decrypt(env.Encrypt)
			if err != nil || !bytes.Equal(got, reply) {
				t.Errorf("Encrypt decrypts to %q, %v; want %q", got, err, reply)
			}
		})
	}
}

func TestCipherConcurrentUse(t *testing.T) {
	c := mustCipher(t, officialAESKey, "wx2c2769f8efd9abc2")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if got, err := c.Decrypt(officialEncrypt); err != nil || string(got) != officialPlain {
					errs <- errors.New("concurrent Decrypt gave a different answer")
					return
				}
				enc, err := c.Encrypt([]byte("x"))
				if err == nil {
					_, err = c.Decrypt(enc)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
