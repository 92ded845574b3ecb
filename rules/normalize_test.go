package rules

import (
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/text/cases"
	"golang.org/x/text/width"
)

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"hello", "hello"},
		{"  Hello\t\n", "hello"},
		{"ＨＥＬＬＯ", "hello"},
		{"\u3000你好\u3000", "你好"},
		{"Straße", "strasse"},
		{"ＡＢＣ１２３", "abc123"},
		{"ﾃｽﾄ", "テスト"}, // half-width katakana widens
		{"K", "k"},     // Kelvin sign
		{"", ""},
		{"   ", ""},
	}
	for _, tt := range tests {
		if got := normalize(tt.in); got != tt.want {
			t.Errorf("normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestWidenKeepsCase(t *testing.T) {
	if got := widen(" ＯＲＤＥＲ１２ "); got != "ORDER12" {
		t.Errorf("widen = %q, want ORDER12", got)
	}
}

// The fast paths (ASCII, nothing to fold) must give exactly what the
// x/text transformers give.
func TestNormalizeMatchesXText(t *testing.T) {
	// Runes from scripts with and without case, full- and half-width forms,
	// ligatures and the special foldings (ß, İ, ŉ, ſ, K, final sigma).
	ranges := [][2]rune{
		{0x20, 0x7e}, {0xa0, 0x24f}, {0x370, 0x3ff}, {0x400, 0x4ff}, {0x530, 0x58f},
		{0x1e00, 0x1fff}, {0x2100, 0x214f}, {0x3000, 0x303f}, {0x3040, 0x30ff}, {0x4e00, 0x4e40},
		{0xac00, 0xac20}, {0xab70, 0xabbf}, {0xfb00, 0xfb17}, {0xff00, 0xffef}, {0x10400, 0x1044f},
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		var b strings.Builder
		for range r.IntN(8) {
			rg := ranges[r.IntN(len(ranges))]
			b.WriteRune(rg[0] + rune(r.IntN(int(rg[1]-rg[0]+1))))
		}
		s := b.String()
		wide := strings.TrimSpace(width.Fold.String(s))
		if got := widen(s); got != wide {
			t.Fatalf("widen(%q) = %q, x/text gives %q", s, got, wide)
		}
		if got, want := normalize(s), cases.Fold().String(wide); got != want {
			t.Fatalf("normalize(%q) = %q, x/text gives %q", s, got, want)
		}
	}
}

func TestNormalizeDoesNotAllocateForPlainText(t *testing.T) {
	for _, s := range []string{"hello world", "我想评价一下你们的服务", "订单 123456", "“好的”。谢谢……😀"} {
		if allocs := testing.AllocsPerRun(100, func() { normalize(s) }); allocs != 0 {
			t.Errorf("normalize(%q): %v allocations, want 0", s, allocs)
		}
	}
}

// foldCase skips x/text for runes it takes to be caseless; every one of
// them must be one that x/text's folding leaves alone, and the ranges must
// be ascending for caseless's early exit.
func TestCaselessRunesDoNotFold(t *testing.T) {
	folder := cases.Fold()
	for i, rg := range caselessRanges {
		if rg[0] > rg[1] || (i > 0 && rg[0] <= caselessRanges[i-1][1]) {
			t.Fatalf("range %d %U-%U is empty or out of order", i, rg[0], rg[1])
		}
		for r := rg[0]; r <= rg[1]; r++ {
			if s := string(r); folder.String(s) != s {
				t.Errorf("%U %q is in caselessRanges but folds to %q", r, s, folder.String(s))
			}
			if !caseless(r) {
				t.Errorf("caseless(%U) = false inside %U-%U", r, rg[0], rg[1])
			}
		}
	}
	for _, r := range []rune{'A', 'Z', 'ß', 'Σ', 'Ａ', 'ｚ', 0xfffd, 0x10400} {
		if caseless(r) {
			t.Errorf("caseless(%U) = true", r)
		}
	}
}

// Invalid UTF-8 (never from WeChat's XML, but Parse takes any bytes) gets
// whatever x/text makes of it.
func TestFoldCaseInvalidUTF8(t *testing.T) {
	for _, s := range []string{"\xff", "你\xe4\xbd", "A\x80b"} {
		if got, want := foldCase(s), cases.Fold().String(s); got != want {
			t.Errorf("foldCase(%q) = %q, x/text gives %q", s, got, want)
		}
	}
}

// folds, which finds the runes a regex can never see, is width.Fold's
// own idea of what it changes.
func TestFoldsAgreesWithWidthFold(t *testing.T) {
	for r := rune(0); r <= 0x1ffff; r++ {
		if r >= 0xd800 && r <= 0xdfff {
			continue
		}
		s := string(r)
		if got, want := folds(r), width.Fold.String(s) != s; got != want {
			t.Errorf("folds(%U) = %v, width.Fold changes it: %v", r, got, want)
		}
	}
}
