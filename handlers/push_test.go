package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

const testAPIKey = "k3y-for-tests"

// fakeSender records what the push API enqueues and serves statuses.
type fakeSender struct {
	mu     sync.Mutex
	queued []wechat.Outgoing
	status map[string]wechat.Status
	err    error // returned by Enqueue while set
	panics bool  // Enqueue panics while set
	n      int
}

func (f *fakeSender) Enqueue(items ...wechat.Outgoing) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	if f.panics {
		f.panics = false
		panic("sender exploded")
	}
	var ids []string
	for _, it := range items {
		f.n++
		it.ID = fmt.Sprintf("id-%d", f.n)
		f.queued = append(f.queued, it)
		ids = append(ids, it.ID)
		msgType := "template"
		if it.Custom != nil {
			msgType = it.Custom.MsgType
		}
		if f.status == nil {
			f.status = map[string]wechat.Status{}
		}
		f.status[it.ID] = wechat.Status{ID: it.ID, State: wechat.StateQueued, MsgType: msgType}
	}
	return ids, nil
}

func (f *fakeSender) Status(id string) (wechat.Status, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.status[id]
	return s, ok
}

func (f *fakeSender) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeSender) setStatus(s wechat.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status[s.ID] = s
}

func (f *fakeSender) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queued)
}

// fakeWindow answers Open from a fixed table; users not in it are unknown.
type fakeWindow map[string]bool

func (w fakeWindow) Open(openid string, _ time.Time) (open, known bool) {
	open, known = w[openid]
	return open, known
}

// pushServer starts the real Echo server with the push API on loopback.
func pushServer(t *testing.T, push *PushConfig) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(New(Config{
		Token:     "token",
		Responder: nopResponder{},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Push:      push,
	}))
	t.Cleanup(srv.Close)
	return srv
}

type nopResponder struct{}

func (nopResponder) Respond(context.Context, *wechat.Message) *wechat.CustomMessage { return nil }

// apiResult is a decoded answer of the push API.
type apiResult struct {
	Code   int
	Header http.Header
	Body   map[string]any
	Raw    string
}

func (r apiResult) str(key string) string { s, _ := r.Body[key].(string); return s }

// problemPaths lists the paths of the answer's problems.
func (r apiResult) problemPaths() []string {
	var paths []string
	ps, _ := r.Body["problems"].([]any)
	for _, p := range ps {
		m, _ := p.(map[string]any)
		path, _ := m["path"].(string)
		paths = append(paths, path)
	}
	return paths
}

func call(t *testing.T, method, url, body string, header map[string]string) apiResult {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := apiResult{Code: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.Body); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %v\n%s", method, url, err, raw)
		}
	}
	return r
}

func auth() map[string]string { return map[string]string{"Authorization": "Bearer " + testAPIKey} }

func withKey(key string) map[string]string {
	h := auth()
	h["Idempotency-Key"] = key
	return h
}

const validText = `{"touser":"oUser1","msgtype":"text","text":{"content":"你好"}}`
const validTemplate = `{"touser":"oUser1","template_id":"TPL","data":{"first":{"value":"hi"}}}`

func TestPushAuth(t *testing.T) {
	f := &fakeSender{}
	srv := pushServer(t, &PushConfig{APIKey: testAPIKey, Sender: f})
	routes := []struct{ method, path, body string }{
		{"POST", "/api/v1/messages", validText},
		{"POST", "/api/v1/templates", validTemplate},
		{"GET", "/api/v1/messages/id-1", ""},
		{"GET", "/api/v1/templates/id-2", ""},
		{"GET", "/api/v1/nothing-here", ""},
	}
	headers := []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"missing", nil, http.StatusUnauthorized},
		{"wrong key", map[string]string{"Authorization": "Bearer not-the-key"}, http.StatusUnauthorized},
		{"key as prefix", map[string]string{"Authorization": "Bearer " + testAPIKey + "x"}, http.StatusUnauthorized},
		{"basic scheme", map[string]string{"Authorization": "Basic " + testAPIKey}, http.StatusUnauthorized},
		{"scheme only", map[string]string{"Authorization": "Bearer"}, http.StatusUnauthorized},
	}
	for _, rt := range routes {
		for _, h := range headers {
			t.Run(rt.method+rt.path+"/"+h.name, func(t *testing.T) {
				r := call(t, rt.method, srv.URL+rt.path, rt.body, h.header)
				if r.Code != h.want {
					t.Fatalf("status %d, want %d: %s", r.Code, h.want, r.Raw)
				}
				if r.str("error") == "" || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("want a JSON error and a WWW-Authenticate: Bearer challenge, got %q %q", r.Header.Get("WWW-Authenticate"), r.Raw)
				}
				if h.name == "missing" && !strings.Contains(r.Raw, "Bearer <WXREPLY_API_KEY>") {
					t.Errorf("the error does not say how to authenticate, readably: %s", r.Raw)
				}
				if strings.Contains(r.Raw, testAPIKey) {
					t.Errorf("the answer repeats the API key: %s", r.Raw)
				}
			})
		}
	}
	if n := f.count(); n != 0 {
		t.Errorf("%d messages queued by unauthenticated requests", n)
	}
	// The right key, in any case of the scheme, gets through.
	for _, scheme := range []string{"Bearer", "bearer"} {
		r := call(t, "POST", srv.URL+"/api/v1/messages", validText, map[string]string{"Authorization": scheme + " " + testAPIKey})
		if r.Code != http.StatusAccepted {
			t.Errorf("%s: status %d, want 202: %s", scheme, r.Code, r.Raw)
		}
	}
}

func TestPushOffWithoutKey(t *testing.T) {
	for name, push := range map[string]*PushConfig{
		"no push config": nil,
		"empty key":      {APIKey: "", Sender: &fakeSender{}},
	} {
		t.Run(name, func(t *testing.T) {
			srv := pushServer(t, push)
			for _, h := range []map[string]string{nil, auth(), {"Authorization": "Bearer "}} {
				r := call(t, "POST", srv.URL+"/api/v1/messages", validText, h)
				if r.Code != http.StatusNotFound {
					t.Errorf("status %d, want 404 (API off): %s", r.Code, r.Raw)
				}
			}
		})
	}
}

func TestPushValidation(t *testing.T) {
	tests := []struct {
		name      string
		path      string
		body      string
		want      int
		wantPaths []string // problem paths, in order
		wantError string   // part of the error message
	}{
		{"text", "/api/v1/messages", validText, 202, nil, ""},
		{"news with one article", "/api/v1/messages", `{"touser":"o1","msgtype":"news","news":{"articles":[{"title":"T","url":"https://example.com"}]}}`, 202, nil, ""},
		{"msgmenu", "/api/v1/messages", `{"touser":"o1","msgtype":"msgmenu","msgmenu":{"head_content":"h","list":[{"id":"1","content":"a"},{"id":"2","content":"b"}]}}`, 202, nil, ""},
		{"kf account", "/api/v1/messages", `{"touser":"o1","msgtype":"text","text":{"content":"x"},"customservice":{"kf_account":"a@b"}}`, 202, nil, ""},
		{"template", "/api/v1/templates", validTemplate, 202, nil, ""},

		{"not JSON", "/api/v1/messages", `touser=o1`, 400, nil, "invalid JSON"},
		{"empty body", "/api/v1/messages", ``, 400, nil, "empty body"},
		{"truncated", "/api/v1/messages", `{"touser":"o1","msgtype":"text"`, 400, nil, "invalid JSON"},
		{"unknown top-level field", "/api/v1/messages", `{"touser":"o1","msgtype":"text","text":{"content":"x"},"priority":1}`, 400, []string{"priority"}, `unknown field "priority"`},
		{"unknown nested field", "/api/v1/messages", `{"touser":"o1","msgtype":"image","image":{"media_id":"M","file":"a.jpg"}}`, 400, []string{"file"}, `unknown field "file"`},
		{"wrong type", "/api/v1/messages", `{"touser":"o1","msgtype":"text","text":{"content":5}}`, 400, []string{"text.content"}, "wrong type"},
		{"array body", "/api/v1/messages", `[` + validText + `]`, 400, []string{"(message)"}, "wrong type"},
		{"two objects", "/api/v1/messages", validText + validText, 400, nil, "data after"},
		{"template unknown field", "/api/v1/templates", `{"touser":"o1","template_id":"T","data":{"a":{"value":"x"}},"topcolor":"#f00"}`, 400, []string{"topcolor"}, "unknown field"},

		{"no touser", "/api/v1/messages", `{"msgtype":"text","text":{"content":"x"}}`, 422, []string{"touser"}, "nothing was sent"},
		{"no msgtype", "/api/v1/messages", `{"touser":"o1","text":{"content":"x"}}`, 422, []string{"text", "msgtype"}, "invalid message"},
		{"unknown msgtype", "/api/v1/messages", `{"touser":"o1","msgtype":"fax"}`, 422, []string{"msgtype"}, ""},
		{"empty text", "/api/v1/messages", `{"touser":"o1","msgtype":"text","text":{"content":"  "}}`, 422, []string{"text.content"}, ""},
		{"payload missing", "/api/v1/messages", `{"touser":"o1","msgtype":"image"}`, 422, []string{"image"}, ""},
		{"image without media_id", "/api/v1/messages", `{"touser":"o1","msgtype":"image","image":{}}`, 422, []string{"image.media_id"}, ""},
		{"two articles", "/api/v1/messages", `{"touser":"o1","msgtype":"news","news":{"articles":[{"title":"a"},{"title":"b"}]}}`, 422, []string{"news.articles"}, ""},
		{"duplicate menu ids", "/api/v1/messages", `{"touser":"o1","msgtype":"msgmenu","msgmenu":{"list":[{"id":"1","content":"a"},{"id":"1","content":"b"}]}}`, 422, []string{"msgmenu.list[1].id"}, ""},
		{"template without data", "/api/v1/templates", `{"touser":"o1","template_id":"T"}`, 422, []string{"data"}, "invalid template"},
		{"template without anything", "/api/v1/templates", `{}`, 422, []string{"touser", "template_id", "data"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSender{}
			srv := pushServer(t, &PushConfig{APIKey: testAPIKey, Sender: f})
			r := call(t, "POST", srv.URL+tt.path, tt.body, auth())
			if r.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", r.Code, tt.want, r.Raw)
			}
			if got := r.problemPaths(); !slices.Equal(got, tt.wantPaths) {
				t.Errorf("problem paths %q, want %q: %s", got, tt.wantPaths, r.Raw)
			}
			if !strings.Contains(r.str("error"), tt.wantError) {
				t.Errorf("error %q does not say %q", r.str("error"), tt.wantError)
			}
			wantQueued := 0
			if tt.want == http.StatusAccepted {
				wantQueued = 1
				if r.str("status") != "queued" || r.str("id") == "" {
					t.Errorf("want {id, status: queued}, got %s", r.Raw)
				}
			}
			if n := f.count(); n != wantQueued {
				t.Errorf("%d messages queued, want %d", n, wantQueued)
			}
		})
	}
}

func TestPushQueuesWhatWasPosted(t *testing.T) {
	f := &fakeSender{}
	srv := pushServer(t, &PushConfig{APIKey: testAPIKey, Sender: f})
	r := call(t, "POST", srv.URL+"/api/v1/messages", `{"touser":"oA","msgtype":"text","text":{"content":"<a href=\"https://x\">x</a>"}}`, auth())
	if r.Code != 202 || r.Header.Get("Location") != "/api/v1/messages/"+r.str("id") {
		t.Fatalf("status %d, Location %q: %s", r.Code, r.Header.Get("Location"), r.Raw)
	}
	r = call(t, "POST", srv.URL+"/api/v1/templates", validTemplate, auth())
	if r.Code != 202 || r.Header.Get("Location") != "/api/v1/templates/"+r.str("id") {
		t.Fatalf("status %d, Location %q: %s", r.Code, r.Header.Get("Location"), r.Raw)
	}
	if len(f.queued) != 2 {
		t.Fatalf("%d queued, want 2", len(f.queued))
	}
	c := f.queued[0]
	if c.Custom == nil || c.Template != nil || c.Custom.ToUser != "oA" || c.Custom.Text.Content != `<a href="https://x">x</a>` || c.Rule != "" {
		t.Errorf("custom message queued as %+v", c)
	}
	tm := f.queued[1]
	if tm.Template == nil || tm.Custom != nil || tm.Template.TemplateID != "TPL" || tm.Template.Data["first"].Value != "hi" {
		t.Errorf("template queued as %+v", tm)
	}
}

func TestPushBodyLimit(t *testing.T) {
	f := &fakeSender{}
	srv := pushServer(t, &PushConfig{APIKey: testAPIKey, Sender: f})
	pad := func(n int) string {
		return `{"touser":"o1","msgtype":"text","text":{"content":"` + strings.Repeat("x", n) + `"}}`
	}
	base := len(pad(0))
	for _, tt := range []struct {
		size int
		want int
	}{
		{MaxBodyBytes, http.StatusAccepted},
		{MaxBodyBytes + 1, http.StatusRequestEntityTooLarge},
		{4 * MaxBodyBytes, http.StatusRequestEntityTooLarge},
	} {
		r := call(t, "POST", srv.URL+"/api/v1/messages", pad(tt.size-base), auth())
		if r.Code != tt.want || r.str("error") == "" && tt.want != 202 {
			t.Errorf("%d bytes: status %d, want %d: %.200s", tt.size, r.Code, tt.want, r.Raw)
		}
	}
	if n := f.count(); n != 1 {
		t.Errorf("%d queued, want 1", n)
	}
}
