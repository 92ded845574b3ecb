package wechat

import "testing"

func BenchmarkParseMessage(b *testing.B) {
	for _, name := range []string{"text.xml", "event_pic_photo_or_album.xml", "unknown_type.xml"} {
		body := readCapture(b, "plain", name)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseMessage(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseMessageStd is BenchmarkParseMessage on the encoding/xml
// path alone, the reference for the fast path of flatxml.go; text.xml and
// event_location.xml take the fast path, event_pic_photo_or_album.xml
// (nested elements) falls back to encoding/xml in both.
func BenchmarkParseMessageStd(b *testing.B) {
	benchmarkParse(b, parseMessageStd)
}

// BenchmarkParseMessageFast is BenchmarkParseMessageStd on ParseMessage.
func BenchmarkParseMessageFast(b *testing.B) {
	benchmarkParse(b, ParseMessage)
}

func benchmarkParse(b *testing.B, parse func([]byte) (*Message, error)) {
	for _, name := range []string{"text.xml", "event_location.xml", "event_pic_photo_or_album.xml"} {
		body := readCapture(b, "plain", name)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parse(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecrypt(b *testing.B) {
	c := mustCipher(b, testAESKey, testAppID)
	m, err := ParseMessage(readCapture(b, "safe", "text.xml"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(m.Encrypt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Decrypt(m.Encrypt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncryptReply(b *testing.B) {
	c := mustCipher(b, testAESKey, testAppID)
	reply, err := EncodeReply("oTEST_user_0001", testGhID, 1732520100, &CustomMessage{Text: &Text{Content: "你好！"}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.EncryptReply(testToken, reply, "1732520100", "1320562132"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyMsgSignature(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if !VerifyMsgSignature(officialToken, officialMsgSig, officialTimestamp, officialNonce, officialEncrypt) {
			b.Fatal("official vector rejected")
		}
	}
}
