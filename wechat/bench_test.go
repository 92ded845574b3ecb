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
