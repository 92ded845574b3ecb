package wechat

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The test account of the captures, as test/testdata/keys.txt documents it.
const (
	testToken  = "wxreplytoken"
	testAppID  = "wxtest0000000001"
	testAESKey = officialAESKey
	testGhID   = "gh_test0000001"
)

var captureRoot = filepath.Join("..", "test", "testdata")

// plainCaptures returns the names of the plain captures, sorted.
func plainCaptures(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(captureRoot, "plain", "*.xml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no captures under %s: %v", captureRoot, err)
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	return names
}

func readCapture(t testing.TB, mode, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(captureRoot, mode, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// encryptCapture encrypts a plain capture with random bytes derived from
// its name, so regenerating an unchanged capture changes nothing.
func encryptCapture(t testing.TB, name string, plain []byte) string {
	t.Helper()
	c := mustCipher(t, testAESKey, testAppID)
	seed := sha256.Sum256([]byte("wxreply capture " + name))
	c.rand = bytes.NewReader(seed[:randomLen])
	enc, err := c.Encrypt(plain)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// safeCapture is the safe-mode body: only ToUserName and Encrypt.
func safeCapture(toUser, enc string) []byte {
	var b bytes.Buffer
	b.WriteString("<xml>")
	element(&b, "ToUserName", toUser)
	element(&b, "Encrypt", enc)
	b.WriteString("</xml>")
	return b.Bytes()
}

// compatCapture is the compatible-mode body: the plaintext fields, then
// Encrypt before the closing tag.
func compatCapture(t testing.TB, plain []byte, enc string) []byte {
	t.Helper()
	end := bytes.LastIndex(plain, []byte("</xml>"))
	if end < 0 {
		t.Fatalf("plain capture does not end with </xml>")
	}
	var b bytes.Buffer
	b.Write(plain[:end])
	element(&b, "Encrypt", enc)
	b.WriteString("\n")
	b.Write(plain[end:])
	return b.Bytes()
}

// TestGenerateCaptures writes test/testdata/safe and compat from plain with
// -update; without it, it fails when they are out of date.
func TestGenerateCaptures(t *testing.T) {
	names := plainCaptures(t)
	for _, name := range names {
		plain := readCapture(t, "plain", name)
		m, err := ParseMessage(plain)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		enc := encryptCapture(t, name, plain)
		for mode, body := range map[string][]byte{
			"safe":   safeCapture(m.ToUserName, enc),
			"compat": compatCapture(t, plain, enc),
		} {
			path := filepath.Join(captureRoot, mode, name)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, body, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if disk, err := os.ReadFile(path); err != nil || !bytes.Equal(disk, body) {
				t.Errorf("%s is out of date (%v): run go test ./wechat -run TestGenerateCaptures -update", path, err)
			}
		}
	}
	for _, mode := range []string{"safe", "compat"} {
		paths, _ := filepath.Glob(filepath.Join(captureRoot, mode, "*.xml"))
		for _, p := range paths {
			if slices.Contains(names, filepath.Base(p)) {
				continue
			}
			if *update {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				continue
			}
			t.Errorf("%s has no plain capture: run go test ./wechat -run TestGenerateCaptures -update", p)
		}
	}
}

// TestCaptureKeysDocumented keeps keys.txt, which the end-to-end suite and
// wxreply replay read, in step with the constants the captures use.
func TestCaptureKeysDocumented(t *testing.T) {
	f, err := os.Open(filepath.Join(captureRoot, "keys.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("keys.txt: not KEY=VALUE: %q", line)
		}
		got[k] = v
	}
	want := map[string]string{
		"WECHAT_TOKEN":            testToken,
		"WECHAT_APPID":            testAppID,
		"WECHAT_ENCODING_AES_KEY": testAESKey,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("keys.txt = %v, want %v", got, want)
	}
}

func TestCaptures(t *testing.T) {
	names := plainCaptures(t)
	for _, name := range names {
		if _, ok := captureWants[name]; !ok {
			t.Errorf("%s: no expectations in captureWants", name)
		}
	}
	for name := range captureWants {
		if !slices.Contains(names, name) {
			t.Errorf("captureWants lists %s, which is not under plain/", name)
		}
	}
	c := mustCipher(t, testAESKey, testAppID)

	for _, name := range names {
		want, ok := captureWants[name]
		if !ok {
			continue
		}
		t.Run(strings.TrimSuffix(name, ".xml"), func(t *testing.T) {
			plain := readCapture(t, "plain", name)
			m, err := ParseMessage(plain)
			if err != nil {
				t.Fatalf("plain: %v", err)
			}
			checkCapture(t, m, want)

			safe, err := ParseMessage(readCapture(t, "safe", name))
			if err != nil {
				t.Fatalf("safe: %v", err)
			}
			if safe.ToUserName != testGhID || safe.Encrypt == "" || safe.MsgType != "" || len(safe.Unknown) != 0 {
				t.Errorf("safe: not a bare envelope: %+v", safe)
			}
			if got, err := c.Decrypt(safe.Encrypt); err != nil || !bytes.Equal(got, plain) {
				t.Errorf("safe: decrypts to %q, %v; want the plain capture", got, err)
			}

			compat, err := ParseMessage(readCapture(t, "compat", name))
			if err != nil {
				t.Fatalf("compat: %v", err)
			}
			if compat.Encrypt == "" {
				t.Fatalf("compat: no Encrypt")
			}
			if got, err := c.Decrypt(compat.Encrypt); err != nil || !bytes.Equal(got, plain) {
				t.Errorf("compat: decrypts to %q, %v; want the plain capture", got, err)
			}
			compat.Encrypt = ""
			if !reflect.DeepEqual(compat, m) {
				t.Errorf("compat: plaintext fields differ from the plain capture:\n%+v\n%+v", compat, m)
			}
		})
	}
}

// checkCapture compares every field of m with want.Msg (Unknown aside,
// which want.UnknownTags covers) and the derived values.
func checkCapture(t *testing.T, m *Message, want captureWant) {
	t.Helper()
	got := *m
	got.XMLName, got.Unknown = want.Msg.XMLName, nil
	base := want.Msg
	base.ToUserName = testGhID
	if base.FromUserName == "" {
		base.FromUserName = "oTEST_user_0001"
	}
	if !reflect.DeepEqual(got, base) {
		t.Errorf("parsed\n%+v\nwant\n%+v", got, base)
	}
	if tags := m.UnknownTags(); !slices.Equal(tags, want.UnknownTags) {
		t.Errorf("UnknownTags = %q, want %q", tags, want.UnknownTags)
	}
	if got := m.Scene(); got != want.Scene {
		t.Errorf("Scene = %q, want %q", got, want.Scene)
	}
	if got := m.OpensWindow(); got != want.OpensWindow {
		t.Errorf("OpensWindow = %v, want %v", got, want.OpensWindow)
	}
	if got := m.DedupeKey(); got != want.DedupeKey {
		t.Errorf("DedupeKey = %q, want %q", got, want.DedupeKey)
	}
}
