package rules

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/wxreply/wxreply/wechat"
)

// fill sets every string field reachable from v to a distinct value and
// gives every slice two elements, returning the values it set by yaml path.
func fill(v reflect.Value, path string, set map[string]string) {
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), path, set)
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if name := yamlName(f); name != "" {
				fill(v.Field(i), joinPath(path, name), set)
			}
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(v.Index(i), indexPath(path, i), set)
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		for _, k := range []string{"first", "remark"} {
			e := reflect.New(v.Type().Elem()).Elem()
			fill(e, joinPath(path, k), set)
			v.SetMapIndex(reflect.ValueOf(k), e)
		}
	case reflect.String:
		v.SetString("v:" + path)
		set[path] = v.String()
	}
}

// TestVisitorsReachEveryStringField guards the typed walkers against new
// fields in the wechat types: every string field must be templated,
// except the local file paths.
func TestVisitorsReachEveryStringField(t *testing.T) {
	for key, f := range payloadFields {
		m := &wechat.CustomMessage{MsgType: key}
		set := map[string]string{}
		fill(reflect.ValueOf(m).Elem().FieldByIndex(f.Index), key, set)
		var visited []string
		visitCustom(m, func(path string, s *string) {
			if set[path] != *s {
				t.Errorf("%s: visited with %q, the field holds %q", path, *s, set[path])
			}
			visited = append(visited, path)
		})
		visitFiles(m, func(path string, s *string) { visited = append(visited, path) })
		for path := range set {
			// Validate refuses mpnews.file: mpnews names a published item.
			if !slices.Contains(visited, path) && path != "mpnews.file" {
				t.Errorf("%s is never visited: add it to visitCustom or visitFiles", path)
			}
		}
	}
	tm := &wechat.TemplateMessage{}
	set := map[string]string{}
	fill(reflect.ValueOf(tm).Elem(), "", set)
	var visited []string
	visitTemplate(tm, func(path string, s *string) { visited = append(visited, path) })
	for path := range set {
		if !slices.Contains(visited, path) {
			t.Errorf("template %s is never visited: add it to visitTemplate", path)
		}
	}
}

// TestCloneIsDeep: filling a clone's strings must leave the prototype as
// it was, for every string field of every payload.
func TestCloneIsDeep(t *testing.T) {
	for key, f := range payloadFields {
		m := &wechat.CustomMessage{MsgType: key}
		fill(reflect.ValueOf(m).Elem().FieldByIndex(f.Index), key, map[string]string{})
		var before []string
		visitCustom(m, func(_ string, s *string) { before = append(before, *s) })
		c := cloneCustom(m)
		visitCustom(c, func(_ string, s *string) { *s = "changed" })
		visitFiles(c, func(_ string, s *string) { *s = "changed" })
		var after []string
		visitCustom(m, func(_ string, s *string) { after = append(after, *s) })
		if !slices.Equal(before, after) {
			t.Errorf("%s: changing the clone changed the prototype", key)
		}
	}
	tm := &wechat.TemplateMessage{}
	fill(reflect.ValueOf(tm).Elem(), "", map[string]string{})
	c := cloneTemplate(tm)
	visitTemplate(c, func(_ string, s *string) { *s = "changed" })
	visitTemplate(tm, func(path string, s *string) {
		if *s == "changed" {
			t.Errorf("template %s: changing the clone changed the prototype", path)
		}
	})
}

func TestParseTemplateFieldCheck(t *testing.T) {
	tests := []struct {
		src     string
		wantErr string
	}{
		{"{{.Content}} {{.FromUserName}} {{index .Groups 1}}", ""},
		{"{{if .EventKey}}{{.EventKey}}{{else}}none{{end}}", ""},
		{"{{range .Groups}}{{.}}{{end}}", ""},
		{"{{with .ScanCodeInfo}}{{.ScanResult}}{{end}}", ""}, // dot is ScanCodeInfo inside with
		{"{{$.Content}}", ""},
		{"{{.Contnet}}", "did you mean .Content?"},
		{"{{$.Recogntion}}", "did you mean .Recognition?"},
		{"{{if .Nonsense}}x{{end}}", "no field .Nonsense in the message"},
		{"{{printf \"%s\" (.Evnt)}}", "did you mean .Event?"},
		{"{{.Content", "unclosed action"},
	}
	for _, tt := range tests {
		_, err := parseTemplate("t", tt.src, 2)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tt.src, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%q: err %v, want %q", tt.src, err, tt.wantErr)
		}
	}
}
