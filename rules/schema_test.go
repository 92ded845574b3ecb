package rules

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/wxreply/wxreply/wechat"
	"gopkg.in/yaml.v3"
)

// rules.schema.json is what editors check rules.yaml against; these tests
// hold it to the Go types the loader decodes into and to what Validate
// requires, so that the two cannot drift apart. Values are validated by a
// full JSON Schema implementation (santhosh-tekuri/jsonschema), the same
// semantics as editors', not by a subset written here.

type schema = map[string]any

// schemaDoc is rules.schema.json: decoded, to walk it beside the Go types,
// and compiled, to validate values against any part of it.
type schemaDoc struct {
	root     schema
	id       string // its $id, under which the compiler knows it
	compiler *jsonschema.Compiler
	compiled map[string]*jsonschema.Schema // by JSON pointer
}

func loadSchema(t *testing.T) *schemaDoc {
	t.Helper()
	data, err := os.ReadFile("../rules.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	d, err := compileSchema(data)
	if err != nil {
		t.Fatalf("rules.schema.json: %v", err)
	}
	return d
}

func compileSchema(data []byte) (*schemaDoc, error) {
	d := &schemaDoc{compiler: jsonschema.NewCompiler(), compiled: map[string]*jsonschema.Schema{}}
	if err := json.Unmarshal(data, &d.root); err != nil {
		return nil, err
	}
	d.id, _ = d.root["$id"].(string)
	if d.id == "" {
		return nil, errors.New("no $id")
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if err := d.compiler.AddResource(d.id, doc); err != nil {
		return nil, err
	}
	// Compiling checks the schema against draft-07's meta-schema.
	if _, err := d.at(""); err != nil {
		return nil, err
	}
	return d, nil
}

// at is the compiled schema at the JSON pointer ptr ("" for the root).
func (d *schemaDoc) at(ptr string) (*jsonschema.Schema, error) {
	if s, ok := d.compiled[ptr]; ok {
		return s, nil
	}
	s, err := d.compiler.Compile(d.id + "#" + ptr)
	if err != nil {
		return nil, err
	}
	d.compiled[ptr] = s
	return s, nil
}

// validate checks v, a value as yaml.v3 decodes into any, against the
// schema at ptr.
func (d *schemaDoc) validate(ptr string, v any) error {
	s, err := d.at(ptr)
	if err != nil {
		return err
	}
	// The validator takes what encoding/json gives: go through JSON.
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

// resolve follows $ref within the root schema, returning the schema it
// names and its pointer.
func (d *schemaDoc) resolve(s schema, ptr string) (schema, string) {
	for {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s, ptr
		}
		ptr = strings.TrimPrefix(ref, "#")
		name := strings.TrimPrefix(ptr, "/definitions/")
		s = d.root["definitions"].(schema)[name].(schema)
	}
}

func asList(v any) []any { l, _ := v.([]any); return l }

// draft07Keywords are the keywords of JSON Schema draft-07, and the
// annotations it defines. A validator ignores any other key, so a
// misspelt keyword ("additionalProperty") would silently check nothing.
var draft07Keywords = []string{
	"$schema", "$id", "$ref", "$comment", "title", "description", "default", "readOnly", "writeOnly", "examples",
	"multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
	"maxLength", "minLength", "pattern", "additionalItems", "items", "maxItems", "minItems", "uniqueItems", "contains",
	"maxProperties", "minProperties", "required", "additionalProperties", "definitions", "properties",
	"patternProperties", "dependencies", "propertyNames", "const", "enum", "type", "format",
	"contentMediaType", "contentEncoding", "if", "then", "else", "allOf", "anyOf", "oneOf", "not",
}

// unknownKeywords lists the keys of schema objects in s (at ptr) that are
// not draft-07 keywords.
func unknownKeywords(s schema, ptr string) []string {
	var out []string
	for k, v := range s {
		if !slices.Contains(draft07Keywords, k) {
			out = append(out, ptr+"/"+k)
			continue
		}
		switch k {
		case "properties", "definitions", "patternProperties", "dependencies":
			for name, sub := range asMap(v) {
				if m, ok := sub.(schema); ok {
					out = append(out, unknownKeywords(m, ptr+"/"+k+"/"+name)...)
				}
			}
		case "items", "additionalItems", "additionalProperties", "contains", "propertyNames", "not", "if", "then", "else":
			if m, ok := v.(schema); ok {
				out = append(out, unknownKeywords(m, ptr+"/"+k)...)
			}
			for i, sub := range asList(v) {
				out = append(out, unknownKeywords(sub.(schema), fmt.Sprintf("%s/%s/%d", ptr, k, i))...)
			}
		case "allOf", "anyOf", "oneOf":
			for i, sub := range asList(v) {
				out = append(out, unknownKeywords(sub.(schema), fmt.Sprintf("%s/%s/%d", ptr, k, i))...)
			}
		}
	}
	slices.Sort(out)
	return out
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

// Every key of the schema is a keyword the validator and editors act on.
func TestSchemaKeywordsAreKnown(t *testing.T) {
	if bad := unknownKeywords(loadSchema(t).root, ""); len(bad) > 0 {
		t.Errorf("rules.schema.json has keys that are not draft-07 keywords, which validators ignore: %v", bad)
	}
	// The audit itself finds a misspelt keyword.
	typo := schema{"type": "object", "properties": schema{"a": schema{"type": "string", "minLenght": 1.0}}, "additionalProperty": false}
	if got := unknownKeywords(typo, ""); !slices.Equal(got, []string{"/additionalProperty", "/properties/a/minLenght"}) {
		t.Errorf("unknownKeywords found %v", got)
	}
}

// The validator is a real one: it refuses what the schema refuses,
// $refs, anyOf, oneOf and not included, and refuses a schema that is not
// one.
func TestSchemaValidatorWorks(t *testing.T) {
	d := loadSchema(t)
	for _, tt := range []struct {
		ptr   string
		v     any
		valid bool
	}{
		{"/definitions/media", map[string]any{"media_id": "M"}, true},
		{"/definitions/media", map[string]any{"media_id": "M", "file": "a.png"}, false}, // oneOf
		{"/definitions/media", map[string]any{"media_id": "M", "extra": 1}, false},      // additionalProperties
		{"/definitions/news", map[string]any{"articles": []any{map[string]any{"title": "a"}, map[string]any{"title": "b"}}}, false},
		{"/definitions/video", map[string]any{"media_id": "M", "thumb_media_id": "T", "thumb_file": "t.jpg"}, false}, // not
		{"/definitions/stringList", []any{}, false},
		{"/definitions/pick", "random", true},
		{"/definitions/pick", "sometimes", false},
	} {
		if err := d.validate(tt.ptr, tt.v); (err == nil) != tt.valid {
			t.Errorf("%s %v: err %v, want valid %v", tt.ptr, tt.v, err, tt.valid)
		}
	}
	if _, err := compileSchema([]byte(`{"$schema": "http://json-schema.org/draft-07/schema#", "$id": "https://example.com/bad.json", "type": "objet"}`)); err == nil {
		t.Error("a schema with type objet compiles")
	}
}

// TestSchemaMatchesGoTypes walks the decode types beside the schema: every
// struct's yaml keys are exactly the schema's properties.
func TestSchemaMatchesGoTypes(t *testing.T) {
	d := loadSchema(t)
	var compare func(rt reflect.Type, s schema, ptr, at string)
	seen := make(map[string]bool) // a recursive type (menu buttons) meets its schema again
	compare = func(rt reflect.Type, s schema, ptr, at string) {
		s, ptr = d.resolve(s, ptr)
		if seen[rt.String()+" "+ptr] {
			return
		}
		seen[rt.String()+" "+ptr] = true
		switch {
		case rt == stringListType:
			for _, v := range []any{"text", []any{"text", "event"}} {
				if err := d.validate(ptr, v); err != nil {
					t.Errorf("%s: a string list refuses %v: %v", at, v, err)
				}
			}
			return
		case rt == replySpecType:
			want := slices.Sorted(maps.Keys(payloadFields))
			want = append(want, templateKey, webhookKey, transferKey)
			slices.Sort(want)
			props := s["properties"].(schema)
			if got := slices.Sorted(maps.Keys(props)); !slices.Equal(got, want) || s["maxProperties"] != 1.0 {
				t.Errorf("%s: reply item keys %v (maxProperties %v), Go has %v", at, got, s["maxProperties"], want)
			}
			for key, f := range payloadFields {
				alt, altPtr := d.objectAlternative(props[key].(schema), ptr+"/properties/"+key)
				compare(f.Type, alt, altPtr, at+"."+key)
			}
			compare(reflect.TypeFor[wechat.TemplateMessage](), props[templateKey].(schema), ptr+"/properties/"+templateKey, at+".template")
			compare(reflect.TypeFor[webhookSpec](), props[webhookKey].(schema), ptr+"/properties/"+webhookKey, at+"."+webhookKey)
			alt, altPtr := d.objectAlternative(props[transferKey].(schema), ptr+"/properties/"+transferKey)
			compare(reflect.TypeFor[wechat.TransferCustomerService](), alt, altPtr, at+"."+transferKey)
			return
		}
		switch rt.Kind() {
		case reflect.Pointer:
			compare(rt.Elem(), s, ptr, at)
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
					compare(ft, p.(schema), ptr+"/properties/"+name, at+"."+name)
				}
			}
		case reflect.Slice:
			if s["type"] != "array" {
				t.Errorf("%s: type %v, want array", at, s["type"])
				return
			}
			compare(rt.Elem(), s["items"].(schema), ptr+"/items", at+"[]")
		case reflect.Map:
			extra, ok := s["additionalProperties"].(schema)
			if !ok {
				t.Errorf("%s: a map needs additionalProperties as a schema", at)
				return
			}
			compare(rt.Elem(), extra, ptr+"/additionalProperties", at+".*")
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
			if err := d.validate(ptr, sample); err != nil {
				t.Errorf("%s: refuses a string: %v", at, err)
			}
		case reflect.Bool:
			if d.validate(ptr, true) != nil || d.validate(ptr, "x") == nil {
				t.Errorf("%s: want a boolean", at)
			}
		default:
			t.Errorf("%s: no comparison for %s", at, rt)
		}
	}
	compare(reflect.TypeFor[fileSpec](), d.root, "", "")
}

// objectAlternative returns the object form of a schema that may also
// take a shorthand (text: "hi"), and its pointer.
func (d *schemaDoc) objectAlternative(s schema, ptr string) (schema, string) {
	s, ptr = d.resolve(s, ptr)
	for i, a := range asList(s["anyOf"]) {
		if r, rp := d.resolve(a.(schema), fmt.Sprintf("%s/anyOf/%d", ptr, i)); r["properties"] != nil {
			return r, rp
		}
	}
	return s, ptr
}

// TestSchemaRequiredMatchesValidate: what the schema requires of a reply
// payload is what Validate requires, both ways.
func TestSchemaRequiredMatchesValidate(t *testing.T) {
	d := loadSchema(t)
	item, itemPtr := d.resolve(d.root["definitions"].(schema)["replyItem"].(schema), "/definitions/replyItem")
	props := item["properties"].(schema)
	// required returns the keys the schema requires, and the keys of which
	// one is required (oneOf), of a payload.
	required := func(key string) (keys []string, oneOf [][]string) {
		s, _ := d.objectAlternative(props[key].(schema), itemPtr+"/properties/"+key)
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
	d := loadSchema(t)
	for _, path := range []string{"../rules.yaml", "testdata/replies.yaml"} {
		if err := d.validate("", yamlFile(t, path)); err != nil {
			t.Errorf("the schema refuses %s, which loads: %v", path, err)
		}
	}
}

// TestSchemaRejectsWhatTheLoaderRejects: a few mistakes an editor should
// flag as the operator types them.
func TestSchemaRejectsWhatTheLoaderRejects(t *testing.T) {
	d := loadSchema(t)
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
		"four menu buttons": rule("") + "menu: {button: [{type: click, name: a, key: A}, {type: click, name: b, key: B}, " +
			"{type: click, name: c, key: C}, {type: click, name: d, key: D}]}\n",
		"a menu button with type and sub_button": rule("") + "menu: {button: [{type: click, name: a, key: A, sub_button: [{type: click, name: b, key: B}]}]}\n",
		"a view button without url":              rule("") + "menu: {button: [{type: view, name: a}]}\n",
	}
	for name, src := range tests {
		var v any
		if err := yaml.Unmarshal([]byte(src), &v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := Parse("testdata/inline.yaml", []byte(src)); err == nil {
			t.Errorf("%s: the loader accepts it; the case is wrong", name)
		}
		if err := d.validate("", v); err == nil {
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
	enum := asList(loadSchema(t).root["definitions"].(schema)["inboundType"].(schema)["enum"])
	var got []string
	for _, v := range enum {
		got = append(got, v.(string))
	}
	if !slices.Equal(got, inboundTypes) {
		t.Errorf("schema inboundType %q, the loader takes %q", got, inboundTypes)
	}
}
