package rules

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/wxreply/wxreply/wechat"
	"gopkg.in/yaml.v3"
)

// rules.schema.json is what editors check rules.yaml against; these tests
// hold it to the Go types the loader decodes into and to what Validate
// requires, so that the two cannot drift apart.

type schema = map[string]any

func loadSchema(t *testing.T) schema {
	t.Helper()
	data, err := os.ReadFile("../rules.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var s schema
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("rules.schema.json: %v", err)
	}
	return s
}

// resolve follows $ref within the root schema.
func resolve(root, s schema) schema {
	for {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		name := strings.TrimPrefix(ref, "#/definitions/")
		s = root["definitions"].(schema)[name].(schema)
	}
}

// validate checks v (as yaml.v3 decodes into any) against s, for the
// keywords rules.schema.json uses; it returns the first violation.
func validate(root, s schema, v any, at string) error {
	s = resolve(root, s)
	if typ, ok := s["type"]; ok {
		var types []any
		if list, ok := typ.([]any); ok {
			types = list
		} else {
			types = []any{typ}
		}
		if !slices.ContainsFunc(types, func(t any) bool { return hasType(v, t.(string)) }) {
			return fmt.Errorf("%s: %v is not %v", at, v, typ)
		}
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		return fmt.Errorf("%s: %v is not one of %v", at, v, enum)
	}
	if c, ok := s["const"]; ok && c != v {
		return fmt.Errorf("%s: %v is not %v", at, v, c)
	}
	if p, ok := s["pattern"].(string); ok {
		if str, ok := v.(string); ok && !regexp.MustCompile(p).MatchString(str) {
			return fmt.Errorf("%s: %q does not match %s", at, str, p)
		}
	}
	if n, ok := s["minLength"].(float64); ok {
		if str, ok := v.(string); ok && len(str) < int(n) {
			return fmt.Errorf("%s: shorter than %v", at, n)
		}
	}
	if alts, ok := s["anyOf"].([]any); ok && !slices.ContainsFunc(alts, func(a any) bool { return validate(root, a.(schema), v, at) == nil }) {
		return fmt.Errorf("%s: matches none of anyOf", at)
	}
	if alts, ok := s["oneOf"].([]any); ok {
		n := 0
		for _, a := range alts {
			if validate(root, a.(schema), v, at) == nil {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%s: matches %d of oneOf", at, n)
		}
	}
	if not, ok := s["not"].(schema); ok && validate(root, not, v, at) == nil {
		return fmt.Errorf("%s: matches not", at)
	}
	switch v := v.(type) {
	case map[string]any:
		return validateObject(root, s, v, at)
	case []any:
		if n, ok := s["minItems"].(float64); ok && len(v) < int(n) {
			return fmt.Errorf("%s: fewer than %v items", at, n)
		}
		if n, ok := s["maxItems"].(float64); ok && len(v) > int(n) {
			return fmt.Errorf("%s: more than %v items", at, n)
		}
		if items, ok := s["items"].(schema); ok {
			for i, e := range v {
				if err := validate(root, items, e, fmt.Sprintf("%s[%d]", at, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func validateObject(root, s schema, v map[string]any, at string) error {
	for _, r := range asList(s["required"]) {
		if _, ok := v[r.(string)]; !ok {
			return fmt.Errorf("%s: %s required", at, r)
		}
	}
	if n, ok := s["minProperties"].(float64); ok && len(v) < int(n) {
		return fmt.Errorf("%s: fewer than %v keys", at, n)
	}
	if n, ok := s["maxProperties"].(float64); ok && len(v) > int(n) {
		return fmt.Errorf("%s: more than %v keys", at, n)
	}
	props, _ := s["properties"].(schema)
	for k, e := range v {
		if p, ok := props[k]; ok {
			if err := validate(root, p.(schema), e, at+"."+k); err != nil {
				return err
			}
			continue
		}
		switch extra := s["additionalProperties"].(type) {
		case bool:
			if !extra {
				return fmt.Errorf("%s: unknown key %s", at, k)
			}
		case schema:
			if err := validate(root, extra, e, at+"."+k); err != nil {
				return err
			}
		}
	}
	return nil
}

func asList(v any) []any { l, _ := v.([]any); return l }

func hasType(v any, t string) bool {
	switch v.(type) {
	case string:
		return t == "string"
	case int, float64:
		return t == "number"
	case bool:
		return t == "boolean"
	case map[string]any:
		return t == "object"
	case []any:
		return t == "array"
	}
	return false
}

// TestSchemaMatchesGoTypes walks the decode types beside the schema: every
// struct's yaml keys are exactly the schema's properties.
func TestSchemaMatchesGoTypes(t *testing.T) {
	root := loadSchema(t)
	var compare func(rt reflect.Type, s schema, at string)
	compare = func(rt reflect.Type, s schema, at string) {
		s = resolve(root, s)
		switch {
		case rt == stringListType:
			for _, v := range []any{"text", []any{"text", "event"}} {
				if err := validate(root, s, v, at); err != nil {
					t.Errorf("%s: a string list refuses %v: %v", at, v, err)
				}
			}
			return
		case rt == replySpecType:
			want := slices.Sorted(maps.Keys(payloadFields))
			want = append(want, templateKey)
			slices.Sort(want)
			props := s["properties"].(schema)
			if got := slices.Sorted(maps.Keys(props)); !slices.Equal(got, want) || s["maxProperties"] != 1.0 {
				t.Errorf("%s: reply item keys %v (maxProperties %v), Go has %v", at, got, s["maxProperties"], want)
			}
			for key, f := range payloadFields {
				compare(f.Type, objectAlternative(root, props[key].(schema)), at+"."+key)
			}
			compare(reflect.TypeFor[wechat.TemplateMessage](), props[templateKey].(schema), at+".template")
			return
		}
		switch rt.Kind() {
		case reflect.Pointer:
			compare(rt.Elem(), s, at)
		case reflect.Struct:
			sf := newChecker(&problems{}, &yaml.Node{}).structFields(rt)
			props, _ := s["properties"].(schema)
			if got, want := slices.Sorted(maps.Keys(props)), slices.Sorted(slices.Values(sf.names)); !slices.Equal(got, want) {
				t.Errorf("%s: schema properties %v, Go type %s has %v", at, got, rt, want)
			}
			if s["additionalProperties"] != false {
				t.Errorf("%s: additionalProperties is %v, want false: unknown keys are errors", at, s["additionalProperties"])
			}
			for name, ft := range sf.byName {
				if p, ok := props[name]; ok {
					compare(ft, p.(schema), at+"."+name)
				}
			}
		case reflect.Slice:
			if s["type"] != "array" {
				t.Errorf("%s: type %v, want array", at, s["type"])
				return
			}
			compare(rt.Elem(), s["items"].(schema), at+"[]")
		case reflect.Map:
			extra, ok := s["additionalProperties"].(schema)
			if !ok {
				t.Errorf("%s: a map needs additionalProperties as a schema", at)
				return
			}
			compare(rt.Elem(), extra, at+".*")
		case reflect.String:
			if _, isNot := s["not"]; isNot && s["type"] == nil {
				return // a field the schema forbids outright, like mpnews.file
			}
			sample := any("x")
			if enum := asList(s["enum"]); enum != nil {
				sample = enum[0]
			}
			if examples := asList(s["examples"]); examples != nil {
				sample = examples[0]
			}
			if _, ok := sample.(string); !ok {
				t.Errorf("%s: an enum of non-strings for a string field", at)
			}
			if err := validate(root, s, sample, at); err != nil {
				t.Errorf("%s: refuses a string: %v", at, err)
			}
		case reflect.Bool:
			if validate(root, s, true, at) != nil || validate(root, s, "x", at) == nil {
				t.Errorf("%s: want a boolean", at)
			}
		default:
			t.Errorf("%s: no comparison for %s", at, rt)
		}
	}
	compare(reflect.TypeFor[fileSpec](), root, "")
}

// objectAlternative returns the object form of a schema that may also
// take a shorthand (text: "hi").
func objectAlternative(root, s schema) schema {
	s = resolve(root, s)
	for _, a := range asList(s["anyOf"]) {
		if r := resolve(root, a.(schema)); r["properties"] != nil {
			return r
		}
	}
	return s
}

// TestSchemaRequiredMatchesValidate: what the schema requires of a reply
// payload is what Validate requires, both ways.
func TestSchemaRequiredMatchesValidate(t *testing.T) {
	root := loadSchema(t)
	props := resolve(root, root["definitions"].(schema)["replyItem"].(schema))["properties"].(schema)
	// required returns the keys the schema requires, and the keys of which
	// one is required (oneOf), of a payload.
	required := func(key string) (keys []string, oneOf [][]string) {
		s := objectAlternative(root, props[key].(schema))
		for _, r := range asList(s["required"]) {
			keys = append(keys, r.(string))
		}
		var alts []string
		for _, a := range asList(s["oneOf"]) {
			alts = append(alts, asList(a.(schema)["required"])[0].(string))
		}
		if alts != nil {
			oneOf = append(oneOf, alts)
		}
		return keys, oneOf
	}

	// Every valid item of testdata/replies.yaml, with a required key
	// removed, must fail to load, at that key.
	var file struct {
		Rules []struct {
			Reply []map[string]any `yaml:"reply"`
		} `yaml:"rules"`
	}
	data, err := os.ReadFile("testdata/replies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	tested := map[string]bool{}
	for _, r := range file.Rules {
		for key, body := range r.Reply[0] {
			payload, ok := body.(map[string]any)
			if !ok {
				continue // the text shorthand
			}
			keys, oneOf := required(key)
			var drops [][]string
			for _, k := range keys {
				drops = append(drops, []string{k})
			}
			drops = append(drops, oneOf...)
			for _, drop := range drops {
				item := maps.Clone(payload)
				for _, k := range drop {
					delete(item, k)
				}
				src, _ := yaml.Marshal(map[string]any{"rules": []any{map[string]any{
					"name": "r", "match": map[string]any{"event": "CLICK"}, "reply": []any{map[string]any{key: item}},
				}}})
				_, err := Parse("testdata/required.yaml", src)
				want := "rules[0].reply[0]." + key + "." + drop[0] + ": required"
				if key == templateKey {
					want = "rules[0].reply[0].template." + drop[0] + ": required"
				}
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("%s without %v: err %v, want %q", key, drop, err, want)
				}
				tested[key] = true
			}
		}
	}

	// An empty payload: everything Validate asks for, the schema requires.
	for key, f := range payloadFields {
		m := &wechat.CustomMessage{MsgType: key}
		reflect.ValueOf(m).Elem().FieldByIndex(f.Index).Set(reflect.New(f.Type.Elem()))
		keys, oneOf := required(key)
		for _, p := range m.Validate() {
			field := strings.TrimPrefix(p.Path, key+".")
			if !slices.Contains(keys, field) && !slices.ContainsFunc(oneOf, func(alts []string) bool { return slices.Contains(alts, field) }) {
				t.Errorf("Validate requires %s, the schema does not (required %v, oneOf %v)", p.Path, keys, oneOf)
			}
		}
	}
	tm := &wechat.TemplateMessage{}
	keys, _ := required(templateKey)
	for _, p := range tm.Validate() {
		if !slices.Contains(keys, p.Path) {
			t.Errorf("Validate requires template.%s, the schema does not", p.Path)
		}
	}
	for key := range payloadFields {
		if !tested[key] && key != wechat.MsgTypeVoice {
			t.Errorf("testdata/replies.yaml has no %s item to test the schema's required keys with", key)
		}
	}
}

func yamlFile(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSchemaAcceptsValidFiles(t *testing.T) {
	root := loadSchema(t)
	for _, path := range []string{"../rules.yaml", "testdata/replies.yaml"} {
		if err := validate(root, root, yamlFile(t, path), path); err != nil {
			t.Errorf("the schema refuses %s, which loads: %v", path, err)
		}
	}
}

// TestSchemaRejectsWhatTheLoaderRejects: a few mistakes an editor should
// flag as the operator types them.
func TestSchemaRejectsWhatTheLoaderRejects(t *testing.T) {
	root := loadSchema(t)
	rule := func(extra string) string {
		return "rules:\n  - name: a\n    match: {event: CLICK}\n" + extra
	}
	tests := map[string]string{
		"unknown top-level key":   "kf_acount: x\n" + rule(""),
		"unknown match key":       "rules:\n  - {name: a, match: {evnt: CLICK}}\n",
		"no match":                "rules:\n  - {name: a, reply: [{text: x}]}\n",
		"reserved name":           "rules:\n  - {name: default, match: {event: CLICK}}\n",
		"bad pick":                rule("    pick: some\n"),
		"bad msgtype":             "rules:\n  - {name: a, match: {msgtype: txt}}\n",
		"two keys in an item":     rule("    reply: [{text: a, image: {media_id: M}}]\n"),
		"unknown reply type":      rule("    reply: [{txt: a}]\n"),
		"two news articles":       rule("    reply: [{news: {articles: [{title: a}, {title: b}]}}]\n"),
		"media_id and file":       rule("    reply: [{image: {media_id: M, file: a.png}}]\n"),
		"no media":                rule("    reply: [{voice: {}}]\n"),
		"mpnews file":             rule("    reply: [{mpnews: {media_id: M, file: a}}]\n"),
		"msgmenu item without id": rule("    reply: [{msgmenu: {list: [{content: a}]}}]\n"),
		"template without data":   rule("    reply: [{template: {template_id: T}}]\n"),
		"empty default":           "default: {reply: []}\n",
		"nothing":                 "kf_account: kf1@gh_acct\n",
		"a kf_account without @":  "kf_account: kf1\ndefault: {reply: [{text: x}]}\n",
	}
	for name, src := range tests {
		var v any
		if err := yaml.Unmarshal([]byte(src), &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := Parse("testdata/inline.yaml", []byte(src)); err == nil {
			t.Errorf("%s: the loader accepts it; the case is wrong", name)
		}
		if err := validate(root, root, v, ""); err == nil {
			t.Errorf("%s: the schema accepts what the loader refuses", name)
		}
	}
}

// The sample's first line points editors (yaml-language-server) at the
// schema.
func TestSampleReferencesTheSchema(t *testing.T) {
	f, err := os.Open("../rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	first, _ := bufio.NewReader(f).ReadString('\n')
	if want := "# yaml-language-server: $schema=./rules.schema.json\n"; first != want {
		t.Errorf("first line %q, want %q", first, want)
	}
}

// The schema's msgtype values are the ones the loader takes.
func TestSchemaInboundTypes(t *testing.T) {
	root := loadSchema(t)
	enum := asList(root["definitions"].(schema)["inboundType"].(schema)["enum"])
	var got []string
	for _, v := range enum {
		got = append(got, v.(string))
	}
	if !slices.Equal(got, inboundTypes) {
		t.Errorf("schema inboundType %q, the loader takes %q", got, inboundTypes)
	}
}
