package handlers

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/wxreply/wxreply/store"
)

// The push API's answers are what openapi.yaml says: every answer the
// server gives is a documented response of its operation, with the
// documented headers and a body valid against the documented schema (and
// no undocumented fields); every documented response is given by some
// request; and the spec's request examples are accepted. The spec is read
// and answers are validated by kin-openapi, a full OpenAPI 3
// implementation, not by a subset written here.

// loadOpenAPI loads openapi.yaml and checks that it is a valid OpenAPI 3
// document (which refuses unknown keys: a misspelt keyword is an error,
// not a check silently skipped). The schemas of responses are closed: an
// object without additionalProperties takes no field its properties do
// not name, so that the spec cannot fall behind the code.
func loadOpenAPI(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := parseOpenAPI(os.ReadFile("openapi.yaml"))
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	return doc
}

func parseOpenAPI(data []byte, err error) (*openapi3.T, error) {
	if err != nil {
		return nil, err
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, err
	}
	closed := map[*openapi3.Schema]bool{}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, resp := range op.Responses.Map() {
				for _, mt := range resp.Value.Content {
					closeObjects(mt.Schema, closed)
				}
			}
		}
	}
	return doc, nil
}

// closeObjects sets additionalProperties: false on every object schema
// in ref that says nothing of additional properties.
func closeObjects(ref *openapi3.SchemaRef, done map[*openapi3.Schema]bool) {
	if ref == nil || ref.Value == nil || done[ref.Value] {
		return
	}
	s := ref.Value
	done[s] = true
	if s.Type.Is(openapi3.TypeObject) && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
		s.AdditionalProperties.Has = new(bool)
	}
	for _, p := range s.Properties {
		closeObjects(p, done)
	}
	closeObjects(s.Items, done)
	closeObjects(s.AdditionalProperties.Schema, done)
	for _, list := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
		for _, r := range list {
			closeObjects(r, done)
		}
	}
}

// route is the operation of doc at method ("get", "post") and the path
// template, as openapi3filter takes it.
func route(t *testing.T, doc *openapi3.T, method, tmpl string) *routers.Route {
	t.Helper()
	item := doc.Paths.Find(tmpl)
	if item == nil {
		t.Fatalf("openapi.yaml has no path %s", tmpl)
	}
	op := item.GetOperation(strings.ToUpper(method))
	if op == nil {
		t.Fatalf("openapi.yaml has no %s %s", method, tmpl)
	}
	return &routers.Route{Spec: doc, Path: tmpl, PathItem: item, Method: strings.ToUpper(method), Operation: op}
}

// validateAnswer checks an answer against the spec: its status is
// documented for the operation, and its content type, headers and body
// are what the spec says.
func validateAnswer(rt *routers.Route, req *http.Request, pathParams map[string]string, code int, header http.Header, body []byte) error {
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: pathParams, Route: rt},
		Status:                 code,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(context.Background(), in)
}

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

			resp := spec.Paths.Find(tmpl).GetOperation(strings.ToUpper(method)).Responses.Status(r.Code)
			if resp == nil {
				t.Fatalf("answered %s, which openapi.yaml does not document for %s: %s", code, tc.op, r.Raw)
			}
			// Headers are optional in OpenAPI unless required: the ones
			// documented for an answer are ones it always has.
			for name := range resp.Value.Headers {
				if r.Header.Get(name) == "" {
					t.Errorf("documented header %s missing", name)
				}
			}
			req, err := http.NewRequest(strings.ToUpper(method), srv.URL+path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			var params map[string]string
			if strings.HasSuffix(tmpl, "{id}") {
				params = map[string]string{"id": path[strings.LastIndexByte(path, '/')+1:]}
			}
			if err := validateAnswer(route(t, spec, method, tmpl), req, params, r.Code, r.Header, []byte(r.Raw)); err != nil {
				t.Errorf("answer %s %s does not match openapi.yaml: %v", code, r.Raw, err)
			}
		})
	}
	// Every documented response is one the server gives.
	for tmpl, item := range spec.Paths.Map() {
		for method, op := range item.Operations() {
			for code := range op.Responses.Map() {
				if !given[strings.ToLower(method)+" "+tmpl+" "+code] {
					t.Errorf("openapi.yaml documents %s for %s %s, but no request here gets it", code, method, tmpl)
				}
			}
		}
	}
}

// The spec's request examples are valid against its own schemas and
// accepted by the server.
func TestOpenAPIExamplesAccepted(t *testing.T) {
	spec := loadOpenAPI(t)
	srv := newPushEnv(t, pushOptions{}).srv
	n := 0
	for tmpl, item := range spec.Paths.Map() {
		if item.Post == nil || item.Post.RequestBody == nil {
			continue
		}
		content := item.Post.RequestBody.Value.Content.Get("application/json")
		if content == nil {
			continue
		}
		examples := map[string]any{}
		if content.Example != nil {
			examples["example"] = content.Example
		}
		for name, ex := range content.Examples {
			examples[name] = ex.Value.Value
		}
		for name, ex := range examples {
			n++
			if err := content.Schema.Value.VisitJSON(ex); err != nil {
				t.Errorf("%s %s: %v", tmpl, name, err)
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

// The validator refuses what the spec does not allow: a wrong answer
// fails, so that TestOpenAPIMatchesAnswers proves something. Each case is
// an answer the server could give by mistake.
func TestOpenAPIValidatorRefusesWrongAnswers(t *testing.T) {
	spec := loadOpenAPI(t)
	post := route(t, spec, "post", "/api/v1/messages")
	get := route(t, spec, "get", "/api/v1/messages/{id}")
	jsonHeader := func(extra ...string) http.Header {
		h := http.Header{"Content-Type": {"application/json; charset=UTF-8"}}
		for i := 0; i+1 < len(extra); i += 2 {
			h.Set(extra[i], extra[i+1])
		}
		return h
	}
	tests := []struct {
		name   string
		rt     *routers.Route
		code   int
		header http.Header
		body   string
		ok     bool
	}{
		{"a right answer", post, 202, jsonHeader("Location", "/api/v1/messages/x"), `{"id":"x","status":"queued"}`, true},
		{"a right error", post, 422, jsonHeader(), `{"error":"invalid","problems":[{"path":"text.content","message":"required"}]}`, true},
		{"an undocumented status", post, 418, jsonHeader(), `{"error":"teapot"}`, false},
		{"an id of the wrong type", post, 202, jsonHeader(), `{"id":42,"status":"queued"}`, false},
		{"a status not in the enum", get, 200, jsonHeader(), `{"id":"x","status":"lost"}`, false},
		{"a required field missing", get, 200, jsonHeader(), `{"id":"x"}`, false},
		{"an undocumented field", get, 200, jsonHeader(), `{"id":"x","status":"queued","priority":1}`, false},
		{"an undocumented field deeper", post, 400, jsonHeader(), `{"error":"x","problems":[{"path":"a","message":"b","hint":"c"}]}`, false},
		{"an errcode that is not an integer", get, 200, jsonHeader(), `{"id":"x","status":"failed","errcode":"45015"}`, false},
		{"not JSON", post, 202, http.Header{"Content-Type": {"text/plain"}}, `queued`, false},
		{"a Retry-After that is not a number", post, 429, jsonHeader("Retry-After", "soon"), `{"error":"slow down"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.rt.Method, "http://127.0.0.1:8080/api/v1/messages", nil)
			params := map[string]string{}
			if strings.HasSuffix(tt.rt.Path, "{id}") {
				params["id"] = "x"
			}
			err := validateAnswer(tt.rt, req, params, tt.code, tt.header, []byte(tt.body))
			if (err == nil) != tt.ok {
				t.Errorf("validation error %v, want valid %v", err, tt.ok)
			}
		})
	}
	// A spec with a misspelt keyword is refused, not read as a schema
	// that checks less.
	bad := strings.Replace(mustRead(t, "openapi.yaml"), "required: [id, status]", "requird: [id, status]", 1)
	if _, err := parseOpenAPI([]byte(bad), nil); err == nil {
		t.Error("openapi.yaml with requird: instead of required: loads")
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
