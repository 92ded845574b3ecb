package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/wxreply/wxreply/store"
)

// The push API's answers are what openapi.yaml says: every answer the
// server gives is a documented response of its operation, with the
// documented headers and a body valid against the documented schema (and
// no undocumented fields); every documented response is given by some
// request; and the spec's request examples are accepted.

// openAPI is openapi.yaml decoded generically, with the few lookups the
// test needs.
type openAPI struct{ doc map[string]any }

func loadOpenAPI(t *testing.T) openAPI {
	t.Helper()
	raw, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	return openAPI{doc}
}

// at walks keys from the document's root; nil when a key is missing.
func at(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// deref follows a local "$ref" ("#/components/...").
func (o openAPI) deref(v any) map[string]any {
	m, _ := v.(map[string]any)
	for m != nil {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		m, _ = at(o.doc, strings.Split(strings.TrimPrefix(ref, "#/"), "/")...).(map[string]any)
	}
	return nil
}

// validate checks v against the subset of JSON Schema that openapi.yaml
// uses. Objects are closed: a field the schema does not name is a
// problem, so that the spec cannot fall behind the code.
func (o openAPI) validate(path string, v any, schema any) []string {
	s := o.deref(schema)
	if s == nil {
		return []string{path + ": no schema"}
	}
	var probs []string
	bad := func(format string, args ...any) { probs = append(probs, path+": "+fmt.Sprintf(format, args...)) }
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		bad("%v not in %v", v, enum)
	}
	switch s["type"] {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			bad("want an object, got %T", v)
			break
		}
		for _, r := range asList(s["required"]) {
			if _, ok := obj[r.(string)]; !ok {
				bad("required field %q missing", r)
			}
		}
		if n, ok := s["minProperties"].(int); ok && len(obj) < n {
			bad("%d fields, want at least %d", len(obj), n)
		}
		props, _ := s["properties"].(map[string]any)
		for k, fv := range obj {
			switch ps, named := props[k]; {
			case named:
				probs = append(probs, o.validate(path+"."+k, fv, ps)...)
			case s["additionalProperties"] != nil && s["additionalProperties"] != false:
				probs = append(probs, o.validate(path+"."+k, fv, s["additionalProperties"])...)
			default:
				bad("field %q is not documented", k)
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			bad("want an array, got %T", v)
			break
		}
		if n, ok := s["minItems"].(int); ok && len(arr) < n {
			bad("%d items, want at least %d", len(arr), n)
		}
		if n, ok := s["maxItems"].(int); ok && len(arr) > n {
			bad("%d items, want at most %d", len(arr), n)
		}
		for i, item := range arr {
			probs = append(probs, o.validate(fmt.Sprintf("%s[%d]", path, i), item, s["items"])...)
		}
	case "string":
		if _, ok := v.(string); !ok {
			bad("want a string, got %T", v)
		}
	case "integer":
		if f, ok := v.(float64); !ok || f != math.Trunc(f) {
			bad("want an integer, got %v", v)
		}
	default:
		bad("schema type %v not supported by this test", s["type"])
	}
	return probs
}

func asList(v any) []any { l, _ := v.([]any); return l }

// pushCase is one request and the operation of the spec it belongs to.
type pushCase struct {
	name   string
	op     string // "post /api/v1/messages"
	method string
	path   string // the URL path; "{id}" is replaced by the id the setup posted
	body   string
	header map[string]string
	setup  func(t *testing.T, e *pushEnv, postedID string) // before the request, after the setup post
	rate   float64                                         // the API's rate limit; 0: none
}

func TestOpenAPIMatchesAnswers(t *testing.T) {
	spec := loadOpenAPI(t)
	big := `{"touser":"o1","msgtype":"text","text":{"content":"` + strings.Repeat("x", MaxBodyBytes) + `"}}`
	closed := `{"touser":"oClosed","msgtype":"text","text":{"content":"x"}}`
	closeStore := func(t *testing.T, e *pushEnv, _ string) {
		if err := e.store.Close(); err != nil {
			t.Fatal(err)
		}
	}
	shutDown := func(t *testing.T, e *pushEnv, _ string) {
		if err := e.engine.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	keyUsedFor := func(path, body string) func(*testing.T, *pushEnv, string) {
		return func(t *testing.T, e *pushEnv, _ string) {
			if r := call(t, "POST", e.url(path), body, withKey("used")); r.Code != 202 {
				t.Fatalf("setup: %d %s", r.Code, r.Raw)
			}
		}
	}
	// outcome records how the posted message ended, as the engine does.
	outcome := func(f store.Final, templateStatus string) func(*testing.T, *pushEnv, string) {
		return func(t *testing.T, e *pushEnv, _ string) {
			f.Now = time.Now()
			if _, err := e.store.Complete(context.Background(), e.claim(t), f); err != nil {
				t.Fatal(err)
			}
			if templateStatus != "" {
				if err := e.engine.TemplateFinished(context.Background(), strconv.FormatInt(f.MsgID, 10), templateStatus); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// slow is a rate whose burst is one request: the next is 429.
	const slow = 0.001
	spendBurst := func(path, body string) func(*testing.T, *pushEnv, string) {
		return func(t *testing.T, e *pushEnv, _ string) {
			if r := call(t, "POST", e.url(path), body, auth()); r.Code != 202 {
				t.Fatalf("setup: %d %s", r.Code, r.Raw)
			}
		}
	}
	const msgs, tpls = "post /api/v1/messages", "post /api/v1/templates"
	const getMsg, getTpl = "get /api/v1/messages/{id}", "get /api/v1/templates/{id}"
	cases := []pushCase{
		{name: "text queued", op: msgs, body: validText},
		{name: "keyed retry", op: msgs, body: validText, header: withKey("k")},
		{name: "not JSON", op: msgs, body: "nope"},
		{name: "unknown field", op: msgs, body: `{"touser":"o","msgtype":"text","text":{"content":"x"},"x":1}`},
		{name: "wrong type", op: msgs, body: `{"touser":"o","msgtype":"text","text":{"content":1}}`},
		{name: "bad key", op: msgs, body: validText, header: withKey(strings.Repeat("k", 300))},
		{name: "no auth", op: msgs, body: validText, header: map[string]string{}},
		{name: "closed window", op: msgs, body: closed},
		{name: "too large", op: msgs, body: big},
		{name: "invalid", op: msgs, body: `{"touser":"o","msgtype":"news","news":{"articles":[]}}`},
		{name: "key used for another body", op: msgs, body: validText, header: withKey("used"),
			setup: keyUsedFor("/api/v1/messages", `{"touser":"o","msgtype":"text","text":{"content":"other"}}`)},
		{name: "store unavailable", op: msgs, body: validText, setup: closeStore},
		{name: "rate limited", op: msgs, body: validText, rate: slow, setup: spendBurst("/api/v1/messages", validText)},
		{name: "template rate limited", op: tpls, body: validTemplate, rate: slow, setup: spendBurst("/api/v1/templates", validTemplate)},
		// The post that made the id spent the burst.
		{name: "status rate limited", op: getMsg, rate: slow},
		{name: "template status rate limited", op: getTpl, rate: slow},
		{name: "shutting down", op: msgs, body: validText, setup: shutDown},

		{name: "template queued", op: tpls, body: validTemplate},
		{name: "template not JSON", op: tpls, body: "{"},
		{name: "template no auth", op: tpls, body: validTemplate, header: map[string]string{"Authorization": "Bearer wrong"}},
		{name: "template too large", op: tpls, body: big},
		{name: "template invalid", op: tpls, body: `{"touser":"o"}`},
		{name: "template key used for a message", op: tpls, body: validTemplate, header: withKey("used"),
			setup: keyUsedFor("/api/v1/messages", validText)},
		{name: "template store unavailable", op: tpls, body: validTemplate, setup: closeStore},
		{name: "template shutting down", op: tpls, body: validTemplate, setup: shutDown},

		{name: "queued", op: getMsg},
		{name: "failed", op: getMsg, setup: outcome(store.Final{Reason: "out of window", ErrCode: 45015, Attempts: 1}, "")},
		{name: "delivered", op: getMsg, setup: outcome(store.Final{Delivered: true, Attempts: 2}, "")},
		{name: "unknown id", op: getMsg, path: "/api/v1/messages/nope"},
		{name: "status no auth", op: getMsg, header: map[string]string{}},
		{name: "status store unavailable", op: getMsg, setup: closeStore},
		{name: "template sent", op: getTpl, setup: outcome(store.Final{Delivered: true, Attempts: 1, MsgID: 200228332}, "")},
		{name: "template delivered", op: getTpl, setup: outcome(store.Final{Delivered: true, Attempts: 1, MsgID: 7}, "success")},
		{name: "template failed", op: getTpl, setup: outcome(store.Final{Delivered: true, Attempts: 1, MsgID: 7}, "failed:user block")},
		{name: "template unknown", op: getTpl, path: "/api/v1/templates/nope"},
		{name: "template status no auth", op: getTpl, header: map[string]string{}},
		{name: "template status store unavailable", op: getTpl, setup: closeStore},
	}
	given := map[string]bool{} // "op code" answered by some case
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newPushEnv(t, pushOptions{apiRate: tc.rate})
			env.closeWindow(t, "oClosed")
			srv := env.srv
			method, tmpl, _ := strings.Cut(tc.op, " ")
			path := tc.path
			var id string
			if strings.HasSuffix(tmpl, "{id}") && path == "" {
				// Ask about a message that was posted first.
				kind, body := "messages", validText
				if strings.Contains(tmpl, "templates") {
					kind, body = "templates", validTemplate
				}
				id = call(t, "POST", srv.URL+"/api/v1/"+kind, body, auth()).str("id")
				path = "/api/v1/" + kind + "/" + id
			}
			if path == "" {
				path = tmpl
			}
			if tc.setup != nil {
				tc.setup(t, env, id)
			}
			header := tc.header
			if header == nil {
				header = auth()
			} else if k := header["Idempotency-Key"]; k != "" && len(k) <= maxIdempotencyKey {
				call(t, "POST", srv.URL+path, tc.body, header) // the retry below repeats it
			}
			r := call(t, strings.ToUpper(method), srv.URL+path, tc.body, header)
			code := strconv.Itoa(r.Code)
			given[tc.op+" "+code] = true

			resp := spec.deref(at(spec.doc, "paths", tmpl, method, "responses", code))
			if resp == nil {
				t.Fatalf("answered %s, which openapi.yaml does not document for %s: %s", code, tc.op, r.Raw)
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			for name := range asMap(resp["headers"]) {
				if r.Header.Get(name) == "" {
					t.Errorf("documented header %s missing", name)
				}
			}
			schema := at(resp, "content", "application/json", "schema")
			if schema == nil {
				t.Fatalf("openapi.yaml gives no JSON schema for %s %s", tc.op, code)
			}
			var body any
			if err := json.Unmarshal([]byte(r.Raw), &body); err != nil {
				t.Fatalf("answer is not JSON: %v: %s", err, r.Raw)
			}
			for _, p := range spec.validate("body", body, schema) {
				t.Errorf("%s (answer %s: %s)", p, code, r.Raw)
			}
		})
	}
	// Every documented response is one the server gives.
	for tmpl, ops := range asMap(at(spec.doc, "paths")) {
		for method, op := range asMap(ops) {
			for code := range asMap(at(op, "responses")) {
				if !given[method+" "+tmpl+" "+code] {
					t.Errorf("openapi.yaml documents %s for %s %s, but no request here gets it", code, method, tmpl)
				}
			}
		}
	}
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

// The spec's request examples are valid against its own schemas and
// accepted by the server.
func TestOpenAPIExamplesAccepted(t *testing.T) {
	spec := loadOpenAPI(t)
	srv := newPushEnv(t, pushOptions{}).srv
	n := 0
	for tmpl, ops := range asMap(at(spec.doc, "paths")) {
		content := asMap(at(ops, "post", "requestBody", "content", "application/json"))
		if content == nil {
			continue
		}
		examples := map[string]any{}
		if ex, ok := content["example"]; ok {
			examples["example"] = ex
		}
		for name, ex := range asMap(content["examples"]) {
			examples[name] = at(ex, "value")
		}
		for name, ex := range examples {
			n++
			for _, p := range spec.validate("example", ex, content["schema"]) {
				t.Errorf("%s %s: %s", tmpl, name, p)
			}
			body, err := json.Marshal(ex)
			if err != nil {
				t.Fatalf("%s %s: %v", tmpl, name, err)
			}
			if r := call(t, "POST", srv.URL+tmpl, string(body), auth()); r.Code != http.StatusAccepted {
				t.Errorf("%s example %s: status %d: %s", tmpl, name, r.Code, r.Raw)
			}
		}
	}
	if n == 0 {
		t.Fatal("openapi.yaml has no request examples")
	}
}
