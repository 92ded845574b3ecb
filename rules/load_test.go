package rules

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// problem is an expected problem: its position and a part of its message.
type problem struct {
	line, col int
	msg       string
}

func TestLoadProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []problem
	}{
		{"unknown top-level key", `
kf_acount: x
rules: [{name: a, match: {event: CLICK}}]`,
			[]problem{{2, 1, `unknown key "kf_acount"; known keys: kf_account, rules, default`}}},
		{"unknown match key", `
rules:
  - name: a
    match: {evnt: subscribe}`,
			[]problem{{4, 12, "rules[0].match: no keys"}, {4, 13, `rules[0].match: unknown key "evnt"`}}},
		{"unknown key inside a reply payload", `
rules:
  - name: a
    match: {event: CLICK}
    reply:
      - news: {articles: [{titel: x}]}`,
			[]problem{{6, 27, "rules[0].reply[0].news.articles[0].title: required"},
				{6, 28, `rules[0].reply[0].news.articles[0]: unknown key "titel"; known keys: title, description, url, picurl`}}},
		{"wrong types", `
rules:
  - name: [a]
    match: {event: CLICK}
    continue: maybe
    reply:
      - text: {content: {x: 1}}`,
			[]problem{{3, 11, "rules[0].name: expected a string, got a list"},
				{5, 15, `rules[0].continue: expected true or false, got "maybe"`},
				{7, 25, "rules[0].reply[0].text.content: expected a string, got a mapping"}}},
		{"rules is not a list", `rules: {name: a}`,
			[]problem{{1, 8, "rules: expected a list, got a mapping"}}},
		{"duplicate rule names", `
rules:
  - {name: a, match: {event: CLICK}}
  - {name: b, match: {event: CLICK}}
  - {name: a, match: {event: VIEW}}`,
			[]problem{{5, 12, `rules[2].name: duplicate rule name "a" (first at line 3)`}}},
		{"reserved and missing names", `
rules:
  - {name: default, match: {event: CLICK}}
  - {match: {event: CLICK}}`,
			[]problem{{3, 12, `rules[0].name: "default" is reserved`}, {4, 5, "rules[1]: a rule needs a name"}}},
		{"a rule with no match", `
rules:
  - name: a
    reply: [{text: hi}]`,
			[]problem{{3, 5, "rules[0]: no match: give at least one of msgtype"}}},
		{"an empty match and empty text", `
rules:
  - {name: a, match: {}}
  - {name: b, match: {text: {}}}`,
			[]problem{{3, 22, "rules[0].match: no keys"}, {4, 29, "rules[1].match.text: needs at least one of equals, contains, prefix, regex"}}},
		{"empty values", `
rules:
  - {name: a, match: {text: {equals: ["  ", ok], contains: ""}}}`,
			[]problem{{3, 39, "rules[0].match.text.equals[0]: empty value"}, {3, 60, "rules[0].match.text.contains: empty value"}}},
		{"duplicate keys", `
rules:
  - name: a
    name: b
    match: {event: CLICK}`,
			[]problem{{4, 5, `rules[0]: duplicate key "name" (first at line 3)`}}},
		{"regexes that do not compile", `
rules:
  - name: a
    match:
      text:
        regex: ['^ok$', '(unclosed', '[z-a]']`,
			[]problem{{6, 25, "rules[0].match.text.regex[1]: error parsing regexp: missing closing ): `(unclosed`"},
				{6, 38, "rules[0].match.text.regex[2]: error parsing regexp: invalid character class range: `z-a`"}}},
		// The text is width-folded before regexes see it, so a full-width
		// or half-width form in a regex can never match.
		{"regexes with runes width folding removes", `
rules:
  - name: a
    match:
      text:
        regex: ['^ｈｉ', '[０-９]+', 'ｶﾅ', '[0-9０-９]+', '（\d+）', '[^ａ]', 'カナ', '^hi$']`,
			[]problem{{6, 17, `rules[0].match.text.regex[0]: "ｈ" never matches: regexes see the text width-folded`},
				{6, 24, "rules[0].match.text.regex[1]: \"０\" never matches: regexes see the text width-folded (full-width ＡＢＣ１２３ reads as ABC123, half-width ｶﾅ as カナ); write `0`"},
				{6, 34, `rules[0].match.text.regex[2]: "ｶ" never matches`},
				{6, 53, "rules[0].match.text.regex[4]: \"（\" never matches: regexes see the text width-folded (full-width ＡＢＣ１２３ reads as ABC123, half-width ｶﾅ as カナ); write `\\(`"}}},
		{"templates that do not parse", `
rules:
  - name: a
    match: {msgtype: text}
    reply:
      - text: "{{.Content"
      - text: "{{.Contnet}}"
      - news: {articles: [{title: "{{nofunc .Content}}"}]}
      - template: {template_id: T, data: {first: {value: "{{end}}"}}}`,
			[]problem{{6, 15, "rules[0].reply[0].text.content: invalid template: unclosed action"},
				{7, 15, "rules[0].reply[1].text.content: invalid template: no field .Contnet in the message; did you mean .Content?"},
				{8, 35, `rules[0].reply[2].news.articles[0].title: invalid template: function "nofunc" not defined`},
				{9, 58, "rules[0].reply[3].template.data.first.value: invalid template: unexpected {{end}}"}}},
		// An index .Groups the rule can never fill fails at every message:
		// that is a mistake to report at load, not at run time.
		{"index .Groups out of reach", `
rules:
  - name: no-regex
    match: {text: {equals: hi}}
    reply: [{text: "{{index .Groups 0}}"}]
  - name: one-group
    match: {text: {regex: ['^a(\d)$', '^b$']}}
    reply:
      - text: "{{index .Groups 1}} {{index .Groups 0}}"
      - text: "{{range .Content}}{{index $.Groups 2}}{{end}}"
  - name: bad-regex
    match: {text: {regex: ['(', '^(a)$']}}
    reply: [{text: "{{index .Groups 5}}"}]
default:
  reply: [{news: {articles: [{title: "{{index .Groups 1}}"}]}}]`,
			[]problem{{5, 20, "rules[0].reply[0].text.content: invalid template: index .Groups 0: the rule has no regex, so .Groups is always empty"},
				{10, 15, "rules[1].reply[1].text.content: invalid template: index .Groups 2: the rule's regex has 1 group(s), so .Groups has at most 2 entries"},
				{12, 28, "rules[2].match.text.regex[0]: error parsing regexp"},
				{15, 38, "default.reply[0].news.articles[0].title: invalid template: index .Groups 1: the rule has no regex"}}},
		{"unknown msgtype and a reply item with two", `
rules:
  - name: a
    match: {msgtype: txt}
    reply:
      - txt: hi
      - text: hi
        image: {media_id: M}
      - {}`,
			[]problem{{4, 22, `rules[0].match.msgtype: "txt" is not an inbound message type`},
				{6, 9, `rules[0].reply[0]: unknown reply type "txt"; want one of text, image, voice, video, music, news, mpnews, mpnewsarticle, msgmenu, wxcard, miniprogrampage, template`},
				{7, 9, "rules[0].reply[1]: a reply item has exactly one key, its message type; got text, image"},
				{9, 9, "rules[0].reply[2]: an empty reply item: give its message type"}}},
		{"missing required fields", `
rules:
  - name: a
    match: {event: CLICK}
    reply:
      - text: ""
      - image: {}
      - video: {title: t}
      - music: {title: t}
      - mpnewsarticle: {}
      - msgmenu: {head_content: h}
      - wxcard: {}
      - miniprogrampage: {title: t}
      - template: {url: "https://example.com"}`,
			[]problem{{6, 15, "rules[0].reply[0].text.content: required"},
				{7, 16, "rules[0].reply[1].image.media_id: required (or file: a local file to upload)"},
				{8, 16, "rules[0].reply[2].video.media_id: required (or file"},
				{9, 16, "rules[0].reply[3].music.musicurl: required"},
				{9, 16, "rules[0].reply[3].music.hqmusicurl: required"},
				{9, 16, "rules[0].reply[3].music.thumb_media_id: required (or thumb_file"},
				{10, 24, "rules[0].reply[4].mpnewsarticle.article_id: required"},
				{11, 18, "rules[0].reply[5].msgmenu.list: required: at least one item"},
				{12, 17, "rules[0].reply[6].wxcard.card_id: required"},
				{13, 26, "rules[0].reply[7].miniprogrampage.appid: required"},
				{13, 26, "rules[0].reply[7].miniprogrampage.pagepath: required"},
				{13, 26, "rules[0].reply[7].miniprogrampage.thumb_media_id: required"},
				{14, 19, "rules[0].reply[8].template.template_id: required"},
				{14, 19, "rules[0].reply[8].template.data: required"}}},
		{"news with more than one article, duplicate msgmenu ids", `
rules:
  - name: a
    match: {event: CLICK}
    reply:
      - news:
          articles:
            - {title: one}
            - {title: two}
      - msgmenu:
          list:
            - {id: "1", content: yes}
            - {id: "", content: maybe}
            - {id: "1", content: no}`,
			[]problem{{8, 13, "rules[0].reply[0].news.articles: has 2 articles; WeChat takes exactly one (it answers 45008 to more)"},
				{13, 20, "rules[0].reply[1].msgmenu.list[1].id: required"},
				{14, 20, `rules[0].reply[1].msgmenu.list[2].id: duplicate id "1" (also list[0])`}}},
		{"files that do not exist, media_id and file both", `
rules:
  - name: a
    match: {event: CLICK}
    reply:
      - image: {file: missing.png}
      - video: {file: pic.png, thumb_file: nope/thumb.jpg}
      - voice: {media_id: M, file: pic.png}
      - image: {file: replies}`,
			[]problem{{6, 23, "rules[0].reply[0].image.file: no such file " + abs(t, "testdata/missing.png")},
				{7, 44, "rules[0].reply[1].video.thumb_file: no such file " + abs(t, "testdata/nope/thumb.jpg")},
				{8, 36, "rules[0].reply[2].voice.file: give media_id or file, not both"},
				{9, 23, "rules[0].reply[3].image.file: " + abs(t, "testdata/replies") + " is not a regular file"}}},
		{"passive constraints", `
rules:
  - name: a
    match: {event: CLICK}
    passive: true
  - name: b
    match: {event: VIEW}
    passive: true
    reply: [{msgmenu: {list: [{id: "1", content: x}]}}]
  - name: c
    match: {event: SCAN}
    passive: true
    pick: random
    reply:
      - text: ok
      - image: {file: pic.png}`,
			[]problem{{5, 14, "rules[0].passive: true needs a reply item"},
				{9, 13, "rules[1].reply[0]: a passive reply (passive: true) is text, image, voice, video, music or news, not msgmenu"},
				{16, 23, "rules[2].reply[1].image.file: a passive reply (passive: true) needs an uploaded media_id, not a file"}}},
		{"bad pick, empty default", `
rules:
  - {name: a, match: {event: CLICK}, pick: sometimes, reply: [{text: x}]}
default:
  reply: []`,
			[]problem{{3, 44, `rules[0].pick: want all or random, got "sometimes"`}, {5, 3, "default: needs a reply"}}},
		{"empty lists and keys without a value", `
rules:
  - {name: a, match: {event: [], from: oVIP}, reply: [{text: x}]}
  - {name: b, match: {event: CLICK, event_key: }, reply: [{text: x}]}
  - {name: c, match: {msgtype: text, text: }, reply: [{text: x}]}
  - {name: d, match: {text: {equals: [], contains: ~}}, reply: [{text: x}]}
  - name: e
    match: {event: CLICK}
    reply:
default:`,
			[]problem{{3, 30, "rules[0].match.event: an empty list: give at least one value"},
				{4, 48, "rules[1].match.event_key: no value: give one value or a list"},
				{5, 44, "rules[2].match.text: no value: give equals, contains, prefix or regex"},
				{6, 38, "rules[3].match.text.equals: an empty list"},
				{6, 52, "rules[3].match.text.contains: no value"},
				{9, 11, "rules[4].reply: no value: give the reply items, or leave reply out"},
				{10, 9, "default: no value: give its reply"}}},
		// yaml.v3 drops an empty item when it decodes a list: the items
		// after it must still be reported at their own lines. (An item
		// with a problem of this kind inside is not checked further.)
		{"empty list items", `
rules:
  -
  - name: a
    match: {event: CLICK}
    reply:
      - ~
      - text: ""
      - news: {articles: [~, {title: t}]}
      - msgmenu: {list: [{id: "1", content: x}, ~, {id: "1", content: y}]}
  - name: b
    match: {event: VIEW}`,
			[]problem{{3, 4, "rules[0]: an empty list item"},
				{7, 9, "rules[1].reply[0]: an empty list item"},
				{8, 15, "rules[1].reply[1].text.content: required"},
				{9, 27, "rules[1].reply[2].news.articles[0]: an empty list item"},
				{10, 49, "rules[1].reply[3].msgmenu.list[1]: an empty list item"}}},
		// yaml.v3 also drops an item it cannot decode: a rule that is not
		// a mapping, a reply item with a wrong type inside.
		{"problems after an item that does not decode", `
rules:
  - just a string
  - name: a
    match: {event: CLICK}
    reply:
      - text: {content: [x]}
      - text: ok
      - text: ""
      - image: {}
  - name: b
    match: {evnt: VIEW}`,
			[]problem{{3, 5, "rules[0]: expected a mapping"},
				{7, 25, "rules[1].reply[0].text.content: expected a string, got a list"},
				{9, 15, "rules[1].reply[2].text.content: required"},
				{10, 16, "rules[1].reply[3].image.media_id: required"},
				{12, 12, "rules[2].match: no keys"},
				{12, 13, `rules[2].match: unknown key "evnt"`}}},
		{"a key that is not a string", `
rules:
  - {? [name]: a, match: {event: CLICK}}`,
			[]problem{{3, 8, "rules[0]: keys must be strings, got a list"}}},
		{"nothing to answer", `kf_account: kf1@gh_acct`,
			[]problem{{1, 1, "no rules and no default"}}},
		{"a kf_account WeChat would refuse", `
kf_account: kf2001
default: {reply: [{text: x}]}`,
			[]problem{{2, 13, `kf_account: "kf2001" is not a customer-service account: WeChat names one account@wechat_id`}}},
		{"YAML syntax error", "rules:\n  - name: a\n\tmatch: x\n",
			[]problem{{3, 1, "YAML syntax: a tab in the indentation: indent with spaces (found a tab character that violates indentation)"}}},
		{"two documents", "default: {reply: [{text: x}]}\n---\ndefault: {reply: [{text: y}]}\n",
			[]problem{{2, 1, "a second YAML document"}}},
		{"empty file", "# nothing\n",
			[]problem{{0, 0, "the file is empty"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(filepath.Join("testdata", "inline.yaml"), []byte(tt.src))
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want a *LoadError", err)
			}
			got := le.Problems
			for i := 0; i < max(len(got), len(tt.want)); i++ {
				switch {
				case i >= len(got):
					t.Errorf("missing problem %d:%d: %s", tt.want[i].line, tt.want[i].col, tt.want[i].msg)
				case i >= len(tt.want):
					t.Errorf("unexpected problem %s", got[i])
				case got[i].Line != tt.want[i].line || got[i].Col != tt.want[i].col || !strings.Contains(got[i].Msg, tt.want[i].msg) || got[i].File != "testdata/inline.yaml":
					t.Errorf("problem %d = %s\n want testdata/inline.yaml:%d:%d: …%s…", i, got[i], tt.want[i].line, tt.want[i].col, tt.want[i].msg)
				}
			}
		})
	}
}

func abs(t *testing.T, path string) string {
	t.Helper()
	p, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
