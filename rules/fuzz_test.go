package rules

import (
	"errors"
	"os"
	"testing"
)

// FuzzParse: whatever the file holds, Parse returns rules or a *LoadError,
// never panics; and rules it returns can decide.
func FuzzParse(f *testing.F) {
	for _, path := range []string{"../rules.yaml", "testdata/replies.yaml"} {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(matchRules))
	f.Add([]byte("rules: &r [*r]\n"))
	f.Add([]byte("rules:\n  - {name: a, match: {text: {regex: '(a'}}}\n"))
	f.Add([]byte("default: {reply: [{template: {template_id: T, data: {k: {value: '{{.Content}}'}}}}]}\n"))
	// Items that yaml.v3 would drop and the checker replaces, through
	// aliases too; empty values; a regex that width folding defeats.
	f.Add([]byte("rules:\n  -\n  - {name: a, match: {event: []}, reply: [~, {text: {content: [x]}}, {text: ok}]}\n"))
	f.Add([]byte("rules: [x, &r {name: a, match: {status: 'failed: x', from: }}, *r]\n"))
	f.Add([]byte("default: {reply: &l [~, {text: hi}]}\nrules: [{name: a, match: {event: CLICK}, reply: *l}]\n"))
	f.Add([]byte("rules: [{name: a, match: {text: {regex: '（\\d+）'}}, reply: [{text: '{{index .Groups 3}}'}]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("testdata/fuzz.yaml", data)
		var le *LoadError
		switch {
		case err == nil:
			for _, m := range []string{"hi", "订单 123456", "ＨＥＬＬＯ"} {
				s.Decide(textMsg(m))
			}
			s.Decide(eventMsg("subscribe", "qrscene_1"))
		case errors.As(err, &le):
			if len(le.Problems) == 0 {
				t.Fatal("a LoadError without problems")
			}
			for _, p := range le.Problems {
				if p.Msg == "" {
					t.Fatalf("a problem without a message: %+v", p)
				}
			}
		default:
			t.Fatalf("err = %v, want nil or a *LoadError", err)
		}
	})
}
