package wechat

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// sharedCorpus is the corpus of other SDKs' samples, read in place and
// never copied into the repository.
var sharedCorpus = filepath.Join("..", "..", "shared", "corpus")

// errClass names the class of a ParseMessage error.
func errClass(err error) string {
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, ErrDoctype):
		return "ErrDoctype"
	case errors.Is(err, ErrMalformed):
		return "ErrMalformed"
	}
	return "other: " + err.Error()
}

// sameMessage is reflect.DeepEqual, except that the float fields compare
// by their bits, so that a NaN both parsers read compares equal.
func sameMessage(a, b *Message) bool {
	if a == nil || b == nil {
		return a == b
	}
	ca, cb := *a, *b
	for _, f := range []struct{ x, y *float64 }{
		{&ca.LocationX, &cb.LocationX}, {&ca.LocationY, &cb.LocationY}, {&ca.Scale, &cb.Scale},
		{&ca.Latitude, &cb.Latitude}, {&ca.Longitude, &cb.Longitude}, {&ca.Precision, &cb.Precision},
	} {
		if math.Float64bits(*f.x) != math.Float64bits(*f.y) {
			return false
		}
		*f.x, *f.y = 0, 0
	}
	if ca.SendLocationInfo != nil && cb.SendLocationInfo != nil {
		la, lb := *ca.SendLocationInfo, *cb.SendLocationInfo
		for _, f := range []struct{ x, y *float64 }{
			{&la.LocationX, &lb.LocationX}, {&la.LocationY, &lb.LocationY}, {&la.Scale, &lb.Scale},
		} {
			if math.Float64bits(*f.x) != math.Float64bits(*f.y) {
				return false
			}
			*f.x, *f.y = 0, 0
		}
		ca.SendLocationInfo, cb.SendLocationInfo = &la, &lb
	}
	return reflect.DeepEqual(ca, cb)
}

// checkDifferential fails t unless ParseMessage, and the fast path when
// it takes body, agree with parseMessageStd. It reports whether the fast
// path took body.
func checkDifferential(t testing.TB, body []byte) (fast bool) {
	t.Helper()
	want, wantErr := parseMessageStd(body)
	got, gotErr := ParseMessage(body)
	if errClass(gotErr) != errClass(wantErr) {
		t.Fatalf("ParseMessage(%q): error %v, parseMessageStd: %v", body, gotErr, wantErr)
	}
	if !sameMessage(got, want) {
		t.Fatalf("ParseMessage(%q) =\n%#v\nparseMessageStd:\n%#v", body, got, want)
	}
	flat, ok := parseFlat(body)
	if !ok {
		if flat != nil {
			t.Fatalf("parseFlat(%q) gave up but returned %#v", body, flat)
		}
		return false
	}
	if wantErr != nil {
		t.Fatalf("parseFlat(%q) accepted what parseMessageStd refuses with %v", body, wantErr)
	}
	if !sameMessage(flat, want) {
		t.Fatalf("parseFlat(%q) =\n%#v\nparseMessageStd:\n%#v", body, flat, want)
	}
	return true
}

// isFlatDocument reports whether body is a well-formed <xml> of plain
// child elements: no attributes, prefixes, comments, processing
// instructions but a leading declaration, directives or grandchildren.
// Those are the bodies the fast path must take.
func isFlatDocument(t testing.TB, body []byte) bool {
	t.Helper()
	if _, err := parseMessageStd(body); err != nil {
		return false
	}
	d := xml.NewDecoder(bytes.NewReader(body))
	depth, tokens := 0, 0
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			return true
		}
		if err != nil {
			t.Fatalf("RawToken after parseMessageStd accepted: %v", err)
		}
		tokens++
		switch tok := tok.(type) {
		case xml.StartElement:
			depth++
			if depth > 2 || len(tok.Attr) > 0 || tok.Name.Space != "" {
				return false
			}
			switch tok.Name.Local {
			case "ScanCodeInfo", "SendPicsInfo", "SendLocationInfo",
				"SubscribeMsgPopupEvent", "SubscribeMsgChangeEvent", "SubscribeMsgSentEvent":
				return false
			}
		case xml.EndElement:
			depth--
		case xml.ProcInst:
			if depth != 0 || tok.Target != "xml" || tokens > 2 {
				return false
			}
		case xml.CharData:
			if depth == 1 && len(bytes.Trim(tok, " \t\r\n")) > 0 {
				return false
			}
		default:
			return false
		}
	}
}

func TestFlatCaptures(t *testing.T) {
	for _, mode := range []string{"plain", "safe", "compat"} {
		for _, name := range plainCaptures(t) {
			body := readCapture(t, mode, name)
			fast := checkDifferential(t, body)
			switch flat := isFlatDocument(t, body); {
			case flat && !fast:
				t.Errorf("%s/%s: a flat capture fell back to encoding/xml", mode, name)
			case !flat && fast:
				t.Errorf("%s/%s: the fast path took a capture with nested elements", mode, name)
			case !fast:
				t.Logf("%s/%s: falls back (nested elements)", mode, name)
			}
		}
	}
}

func TestFlatSharedCorpus(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(sharedCorpus, "*.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Skipf("no corpus under %s", sharedCorpus)
	}
	for _, p := range paths {
		body, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fast := checkDifferential(t, body)
		if flat := isFlatDocument(t, body); flat != fast {
			t.Errorf("%s: flat document %v, fast path %v", filepath.Base(p), flat, fast)
		} else if !fast {
			_, err := parseMessageStd(body)
			t.Logf("%s: falls back (%v)", filepath.Base(p), errClass(err))
		}
	}
}

// TestFlatSharedEncrypted runs the envelopes of the encrypted vectors and
// the plaintext they decrypt to, as the vectors state it.
func TestFlatSharedEncrypted(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(sharedCorpus, "encrypted", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Skipf("no encrypted vectors under %s", sharedCorpus)
	}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Body      string `json:"body"`
			Plaintext string `json:"plaintext_expected"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, body := range []string{v.Body, v.Plaintext} {
			if body == "" {
				continue
			}
			fast := checkDifferential(t, []byte(body))
			if flat := isFlatDocument(t, []byte(body)); flat != fast {
				t.Errorf("%s: flat document %v, fast path %v: %q", filepath.Base(p), flat, fast, body)
			}
		}
	}
}

// flatCases are the tricky inputs; fast says whether the fast path must
// take each (the answer must match parseMessageStd's either way).
var flatCases = []struct {
	name, body string
	fast       bool
}{
	{"cdata with space around", "<xml><Content>\n <![CDATA[hi]]>\n</Content></xml>", true},
	{"split cdata", "<xml><Content><![CDATA[a]]]]><![CDATA[>b]]></Content></xml>", true},
	{"cdata and text mixed", "<xml><Content>x<![CDATA[<y>]]>&amp;z<![CDATA[]]></Content></xml>", true},
	{"empty cdata", "<xml><Content><![CDATA[]]></Content></xml>", true},
	{"cdata with markup", "<xml><Content><![CDATA[<a>&amp;<!-- -->]]></Content></xml>", true},
	{"cdata with directive", "<xml><Content><![CDATA[<!DOCTYPE x>]]></Content></xml>", true},
	{"entities", "<xml><Content>&lt;&gt;&amp;&apos;&quot;</Content></xml>", true},
	{"numeric references", "<xml><Content>&#38;&#x26;&#X26;</Content></xml>", false},
	{"numeric references ok", "<xml><Content>&#38;&#x26;&#x4F60;&#20320;&#0000065;</Content></xml>", true},
	{"reference to nul", "<xml><Content>&#0;</Content></xml>", false},
	{"reference to surrogate", "<xml><Content>&#xD800;</Content></xml>", false},
	{"reference to fffe", "<xml><Content>&#xFFFE;</Content></xml>", false},
	{"reference too big", "<xml><Content>&#x110000;</Content></xml>", false},
	{"reference overflow", "<xml><Content>&#99999999999999999999999;</Content></xml>", false},
	{"reference to cr", "<xml><Content>a&#13;\nb&#xD;</Content></xml>", true},
	{"empty reference", "<xml><Content>&#;</Content></xml>", false},
	{"unknown entity", "<xml><Content>&nbsp;</Content></xml>", false},
	{"bare ampersand", "<xml><Content>a & b</Content></xml>", false},
	{"entity without semicolon", "<xml><Content>&amp</Content></xml>", false},
	{"]]> in text", "<xml><Content>a]]>b</Content></xml>", false},
	{"]] > in text", "<xml><Content>a]]&gt;b]>]</Content></xml>", true},
	{"empty element", "<xml><Content/><CreateTime/><Scale/><Foo/></xml>", true},
	{"empty pair", "<xml><Content></Content><CreateTime></CreateTime><Scale></Scale><Foo></Foo></xml>", true},
	{"declaration", `<?xml version="1.0"?><xml><Content>a</Content></xml>`, true},
	{"declaration utf-8", `<?xml version="1.0" encoding="utf-8"?>` + "\n<xml><Content>a</Content></xml>", true},
	{"declaration UTF-8", `<?xml version="1.0" encoding="UTF-8" ?><xml/>`, true},
	{"declaration gbk", `<?xml version="1.0" encoding="gbk"?><xml/>`, false},
	{"declaration 1.1", `<?xml version="1.1"?><xml/>`, false},
	{"declaration single quotes", `<?xml version='1.0'?><xml/>`, false},
	{"declaration standalone", `<?xml version="1.0" standalone="yes"?><xml/>`, false},
	{"space before declaration", "\n <?xml version=\"1.0\"?><xml/>", true},
	{"two declarations", `<?xml version="1.0"?><?xml version="1.0"?><xml/>`, false},
	{"bom", "\xef\xbb\xbf<xml/>", false},
	{"bom before declaration", "\xef\xbb\xbf<?xml version=\"1.0\"?><xml/>", false},
	{"crlf", "<xml>\r\n<Content>a\r\nb\rc\r\r\n</Content>\r\n<Label><![CDATA[x\r\ny\r]]>\r\n</Label>\r\n</xml>\r\n", true},
	{"cr across cdata", "<xml><Content><![CDATA[a\r]]>\nb</Content></xml>", true},
	{"duplicate string", "<xml><Content>a</Content><Content>b</Content></xml>", true},
	{"duplicate then empty", "<xml><Content>a</Content><Content/><CreateTime>5</CreateTime><CreateTime/></xml>", true},
	{"duplicate number", "<xml><CreateTime>1</CreateTime><CreateTime>2</CreateTime></xml>", true},
	{"duplicate unknown", "<xml><Foo>a</Foo><Foo>b</Foo></xml>", true},
	{"unknown tags", "<xml><Foo>a</Foo><bar.baz-1>b</bar.baz-1><_x/><LocationX>1</LocationX><xml>n</xml></xml>", true},
	{"case of names", "<xml><msgtype>text</msgtype><BizMsgMenuID>1</BizMsgMenuID><bizmsgmenuid>2</bizmsgmenuid><MsgID>3</MsgID><MsgId>4</MsgId></xml>", true},
	{"numbers with spaces", "<xml><CreateTime> 12 </CreateTime><TotalCount>\n3\n</TotalCount><Scale>\t1.5 </Scale></xml>", true},
	{"numbers in cdata", "<xml><CreateTime><![CDATA[12]]></CreateTime><Latitude> <![CDATA[1.5]]> </Latitude></xml>", true},
	{"number nbsp", "<xml><CreateTime>\u00a012</CreateTime></xml>", true},
	{"number signs", "<xml><CreateTime>+12</CreateTime><ErrorCount>-3</ErrorCount><Precision>-0</Precision></xml>", true},
	{"float forms", "<xml><Location_X>1e3</Location_X><Location_Y>0x1p-2</Location_Y><Scale>Inf</Scale><Precision>NaN</Precision></xml>", true},
	{"bad number", "<xml><CreateTime>12a</CreateTime></xml>", false},
	{"space-only number", "<xml><CreateTime> </CreateTime></xml>", false},
	{"number underscore", "<xml><CreateTime>1_000</CreateTime></xml>", false},
	{"int overflow", "<xml><CreateTime>99999999999999999999</CreateTime></xml>", false},
	{"float overflow", "<xml><Scale>1e400</Scale></xml>", false},
	{"bad float", "<xml><Latitude>1.2.3</Latitude></xml>", false},
	{"text outside the root", "<xml/>x", false},
	{"text before the root", "x<xml/>", false},
	{"text inside the root", "<xml>x<Content>a</Content></xml>", false},
	{"two roots", "<xml></xml><xml></xml>", false},
	{"wrong root", "<XML></XML>", false},
	{"doctype", `<!DOCTYPE x [<!ENTITY a "b">]><xml><Content>&a;</Content></xml>`, false},
	{"doctype inside", `<xml><!DOCTYPE x><Content>a</Content></xml>`, false},
	{"comment", "<xml><!-- c --><Content>a</Content></xml><!-- d -->", false},
	{"comment in element", "<xml><Content>a<!-- c -->b</Content></xml>", false},
	{"processing instruction", "<xml><?pi x?><Content>a</Content></xml>", false},
	{"truncated", "<xml><Content>a</Content>", false},
	{"truncated cdata", "<xml><Content><![CDATA[a", false},
	{"truncated text", "<xml><Content>a", false},
	{"truncated tag", "<xml><Content", false},
	{"truncated end", "<xml><Content>a</Cont", false},
	{"mismatched end", "<xml><Content>a</Contents></xml>", false},
	{"root attributes", `<xml a="b"><Content>a</Content></xml>`, false},
	{"root namespace", `<xml xmlns="urn:x"><Content>a</Content></xml>`, false},
	{"child attributes", `<xml><Content a="b">a</Content></xml>`, false},
	{"prefix", `<xml><a:Content>a</a:Content></xml>`, false},
	{"space in tags", "<xml ><Content >a</Content ><Foo /></xml >", false},
	{"nested unknown", "<xml><Foo><Bar>x</Bar>y</Foo></xml>", false},
	{"nested known", "<xml><Content><b>x</b></Content></xml>", false},
	{"struct element empty", "<xml><ScanCodeInfo/></xml>", false},
	{"struct element text", "<xml><SendLocationInfo>x</SendLocationInfo></xml>", false},
	{"scancode", "<xml><ScanCodeInfo><ScanType>qrcode</ScanType></ScanCodeInfo></xml>", false},
	{"invalid utf-8", "<xml><Content>\xff</Content></xml>", false},
	{"invalid utf-8 in cdata", "<xml><Content><![CDATA[\xc3]]></Content></xml>", false},
	{"encoded surrogate", "<xml><Content>\xed\xa0\x80</Content></xml>", false},
	{"control character", "<xml><Content>a\x01b</Content></xml>", false},
	{"control in cdata", "<xml><Content><![CDATA[\x00]]></Content></xml>", false},
	{"ufffe", "<xml><Content>\uFFFE</Content></xml>", false},
	{"replacement character", "<xml><Content>\uFFFD😀</Content></xml>", true},
	{"non-ascii name", "<xml><内容>a</内容></xml>", false},
	{"digit name", "<xml><1a>a</1a></xml>", false},
	{"empty", "", false},
	{"only space", " \n", false},
	{"empty root", "<xml/>", true},
	{"empty root pair", " <xml>\n</xml>\n\t", true},
	{"msgtype and event trimmed", "<xml><MsgType> text\n</MsgType><Event> CLICK </Event></xml>", true},
	{"msgtype unknown trimmed", "<xml><MsgType>\n<![CDATA[ 文本 ]]>\n</MsgType><Event>x </Event></xml>", true},
	{"msgtype duplicate", "<xml><MsgType> text </MsgType><MsgType>image</MsgType></xml>", true},
	{"long value", "<xml><Content>" + strings.Repeat("长&amp;", 400) + "</Content></xml>", true},
	{"all fields", `<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>` +
		`<MsgType>text</MsgType><MsgId>2</MsgId><MsgID>3</MsgID><Content>c</Content><bizmsgmenuid>4</bizmsgmenuid>` +
		`<PicUrl>d</PicUrl><MediaId>e</MediaId><Format>f</Format><Recognition>g</Recognition><ThumbMediaId>h</ThumbMediaId>` +
		`<Location_X>1.5</Location_X><Location_Y>2.5</Location_Y><Scale>3</Scale><Label>i</Label><Title>j</Title>` +
		`<Description>k</Description><Url>l</Url><Event>m</Event><EventKey>n</EventKey><Ticket>o</Ticket>` +
		`<Latitude>4.5</Latitude><Longitude>5.5</Longitude><Precision>6.5</Precision><MenuId>p</MenuId>` +
		`<Status>q</Status><TotalCount>7</TotalCount><FilterCount>8</FilterCount><SentCount>9</SentCount>` +
		`<ErrorCount>10</ErrorCount><Encrypt>r</Encrypt><Unknown>s</Unknown><XMLName>t</XMLName></xml>`, true},
}

func TestFlatCases(t *testing.T) {
	for _, tc := range flatCases {
		t.Run(tc.name, func(t *testing.T) {
			if fast := checkDifferential(t, []byte(tc.body)); fast != tc.fast {
				_, err := parseMessageStd([]byte(tc.body))
				t.Errorf("fast path took it: %v, want %v (encoding/xml: %v)", fast, tc.fast, err)
			}
		})
	}
}

// TestFlatValues pins a few values down, beyond agreeing with
// encoding/xml.
func TestFlatValues(t *testing.T) {
	m, ok := parseFlat([]byte("<xml><Content>\r\n <![CDATA[hi]]>\r\n</Content><Foo>a&#x26;b</Foo><MsgType> text </MsgType></xml>"))
	if !ok {
		t.Fatal("fast path gave up")
	}
	if m.Content != "\n hi\n" {
		t.Errorf("Content = %q, want %q", m.Content, "\n hi\n")
	}
	if want := []UnknownElement{{XMLName: xml.Name{Local: "Foo"}, Value: "a&b"}}; !reflect.DeepEqual(m.Unknown, want) {
		t.Errorf("Unknown = %#v, want %#v", m.Unknown, want)
	}
	if m.MsgType != "text" {
		t.Errorf("MsgType = %q", m.MsgType)
	}
	if m, _ := parseFlat([]byte("<xml><Content>a</Content></xml>")); m == nil || m.Unknown != nil {
		t.Errorf("Unknown of a message without unknown tags: %#v", m)
	}
}

// TestFlatAllocs keeps the fast path's allocations down: the Message and
// one string per string value that is not a documented constant.
func TestFlatAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("allocation counts differ under coverage")
	}
	body := readCapture(t, "plain", "text.xml")
	// Message, ToUserName, FromUserName, Content, MsgId.
	if n := testing.AllocsPerRun(100, func() { _, _ = parseFlat(body) }); n > 5 {
		t.Errorf("parseFlat(text.xml) allocates %v times, want at most 5", n)
	}
}
