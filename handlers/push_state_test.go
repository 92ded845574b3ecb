package handlers

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"
	"gopkg.in/yaml.v3"

	"github.com/wxreply/wxreply/wechat"
)

func TestPushIdempotency(t *testing.T) {
	reformatted := "{\n  \"text\": {\"content\": \"你好\"},\n  \"msgtype\": \"text\",\n  \"touser\": \"oUser1\"\n}"
	other := `{"touser":"oUser1","msgtype":"text","text":{"content":"bye"}}`
	type step struct {
		path, body, key string
		want            int
		sameIDAs        int // index of the earlier step whose id must come back; -1: a new id
	}
	tests := []struct {
		name      string
		steps     []step
		wantSends int
	}{
		{"same key, same body", []step{
			{"/api/v1/messages", validText, "k1", 202, -1},
			{"/api/v1/messages", validText, "k1", 202, 0},
			{"/api/v1/messages", validText, "k1", 202, 0},
		}, 1},
		{"same key, same message written differently", []step{
			{"/api/v1/messages", validText, "k1", 202, -1},
			{"/api/v1/messages", reformatted, "k1", 202, 0},
		}, 1},
		{"same key, different body", []step{
			{"/api/v1/messages", validText, "k1", 202, -1},
			{"/api/v1/messages", other, "k1", 422, -1},
			{"/api/v1/messages", validText, "k1", 202, 0},
		}, 1},
		{"same key on the other route", []step{
			{"/api/v1/messages", validText, "k1", 202, -1},
			{"/api/v1/templates", validTemplate, "k1", 422, -1},
		}, 1},
		{"different keys", []step{
			{"/api/v1/messages", validText, "k1", 202, -1},
			{"/api/v1/messages", validText, "k2", 202, -1},
		}, 2},
		{"no key sends every time", []step{
			{"/api/v1/messages", validText, "", 202, -1},
			{"/api/v1/messages", validText, "", 202, -1},
		}, 2},
		{"an invalid first request leaves the key free", []step{
			{"/api/v1/messages", `{"touser":"oUser1","msgtype":"text","text":{}}`, "k1", 422, -1},
			{"/api/v1/messages", other, "k1", 202, -1},
		}, 1},
		{"key too long", []step{
			{"/api/v1/messages", validText, strings.Repeat("k", 256), 400, -1},
		}, 0},
		{"templates", []step{
			{"/api/v1/templates", validTemplate, "t1", 202, -1},
			{"/api/v1/templates", validTemplate, "t1", 202, 0},
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSender{}
			srv := pushServer(t, &PushConfig{APIKey: testAPIKey, Sender: f})
			var ids []string
			for i, s := range tt.steps {
				h := auth()
				if s.key != "" {
					h = withKey(s.key)
				}
				r := call(t, "POST", srv.URL+s.path, s.body, h)
				ids = append(ids, r.str("id"))
				if r.Code != s.want {
					t.Fatalf("step %d: status %d, want %d: %s", i, r.Code, s.want, r.Raw)
				}
				if s.want != 202 {
					continue
				}
				if s.sameIDAs >= 0 && r.str("id") != ids[s.sameIDAs] {
					t.Errorf("step %d: id %q, want step %d's %q", i, r.str("id"), s.sameIDAs, ids[s.sameIDAs])
				}
				if s.sameIDAs < 0 && slices.Contains(ids[:i], r.str("id")) {
					t.Errorf("step %d: id %q repeats an earlier one", i, r.str("id"))
				}
			}
			if n := f.count(); n != tt.wantSends {
				t.Errorf("%d messages queued, want %d", n, tt.wantSends)
			}
		})
	}
}

// A refused request (queue full) is not remembered: the client's retry
// with the same key is tried again and then remembered.
func TestPushIdempotencyAfterRefusal(t *testing.T) {
	f := &fakeSender{}
	srv := pushServer(t, &PushConfig{APIKey: testAPIKey, Sender: f, Window: fakeWindow{"oClosed": false}})

	f.setErr(wechat.ErrQueueFull)
	r := call(t, "POST", srv.URL+"/api/v1/messages", validText, withKey("k"))
	if r.Code != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("queue full: status %d, Retry-After %q: %s", r.Code, r.Header.Get("Retry-After"), r.Raw)
	}
	f.setErr(nil)
	first := call(t, "POST", srv.URL+"/api/v1/messages", validText, withKey("k"))
	again := call(t, "POST", srv.URL+"/api/v1/messages", validText, withKey("k"))
	if first.Code != 202 || again.Code != 202 || first.str("id") != again.str("id") {
		t.Fatalf("retries: %d %s / %d %s", first.Code, first.Raw, again.Code, again.Raw)
	}

	// The window refusal, too, leaves the key free.
	closed := `{"touser":"oClosed","msgtype":"text","text":{"content":"x"}}`
	if r := call(t, "POST", srv.URL+"/api/v1/messages", closed, withKey("w")); r.Code != http.StatusConflict {
		t.Fatalf("closed window: status %d: %s", r.Code, r.Raw)
	}
	if r := call(t, "POST", srv.URL+"/api/v1/messages", validText, withKey("w")); r.Code != 202 {
		t.Fatalf("key reused after 409: status %d: %s", r.Code, r.Raw)
	}

	// So does a request that panicked on the way.
	f.mu.Lock()
	f.panics = true
	f.mu.Unlock()
	if r := call(t, "POST", srv.URL+"/api/v1/messages", validText, withKey("p")); r.Code != http.StatusInternalServerError {
		t.Fatalf("panicking sender: status %d: %s", r.Code, r.Raw)
	}
	if r := call(t, "POST", srv.URL+"/api/v1/messages", validText, withKey("p")); r.Code != 202 {
		t.Fatalf("key reused after a panic: status %d: %s", r.Code, r.Raw)
	}
	if n := f.count(); n != 3 {
		t.Errorf("%d queued, want 3", n)
	}
}

// Concurrent retries with one key send once and all get the same id.
func TestPushIdempotencyConcurrent(t *testing.T) {
	f := &fakeSender{}
	srv := pushServer(t, &PushConfig{APIKey: testAPIKey, Sender: f})
	const n = 32
	ids := make([]string, n)
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := call(t, "POST", srv.URL+"/api/v1/messages", validText, withKey("same"))
			ids[i], codes[i] = r.str("id"), r.Code
		}()
	}
	wg.Wait()
	for i := range n {
		if codes[i] != 202 || ids[i] != ids[0] || ids[0] == "" {
			t.Fatalf("request %d: status %d id %q, want 202 and %q", i, codes[i], ids[i], ids[0])
		}
	}
	if got := f.count(); got != 1 {
		t.Errorf("%d messages queued by %d concurrent retries, want 1", got, n)
	}
}

func TestPushEnqueueRefusals(t *testing.T) {
	tests := []struct {
		err        error
		want       int
		retryAfter bool
	}{
		{wechat.ErrQueueFull, http.StatusTooManyRequests, true},
		{wechat.ErrSenderClosed, http.StatusServiceUnavailable, false},
		{fmt.Errorf("item 0: %w: touser and msgtype are required", wechat.ErrInvalidOutgoing), http.StatusUnprocessableEntity, false},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			f := &fakeSender{err: tt.err}
			srv := pushServer(t, &PushConfig{APIKey: testAPIKey, Sender: f})
			for _, path := range []string{"/api/v1/messages", "/api/v1/templates"} {
				body := validText
				if strings.Contains(path, "templates") {
					body = validTemplate
				}
				r := call(t, "POST", srv.URL+path, body, auth())
				if r.Code != tt.want || r.str("error") == "" {
					t.Errorf("%s: status %d, want %d with an error: %s", path, r.Code, tt.want, r.Raw)
				}
				if got := r.Header.Get("Retry-After") != ""; got != tt.retryAfter {
					t.Errorf("%s: Retry-After %q, want one: %v", path, r.Header.Get("Retry-After"), tt.retryAfter)
				}
			}
		})
	}
}

func TestPushWindow(t *testing.T) {
	w := fakeWindow{"oOpen": true, "oClosed": false}
	tests := []struct {
		name, path, body string
		want             int
	}{
		{"open", "/api/v1/messages", `{"touser":"oOpen","msgtype":"text","text":{"content":"x"}}`, 202},
		{"unknown user is tried", "/api/v1/messages", `{"touser":"oNew","msgtype":"text","text":{"content":"x"}}`, 202},
		{"known outside", "/api/v1/messages", `{"touser":"oClosed","msgtype":"text","text":{"content":"x"}}`, 409},
		{"template ignores the window", "/api/v1/templates", `{"touser":"oClosed","template_id":"T","data":{"a":{"value":"v"}}}`, 202},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSender{}
			srv := pushServer(t, &PushConfig{APIKey: testAPIKey, Sender: f, Window: w})
			r := call(t, "POST", srv.URL+tt.path, tt.body, auth())
			if r.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", r.Code, tt.want, r.Raw)
			}
			wantQueued := 1
			if tt.want == http.StatusConflict {
				wantQueued = 0
				if !strings.Contains(r.str("error"), "48-hour") {
					t.Errorf("409 does not say why: %s", r.Raw)
				}
			}
			if n := f.count(); n != wantQueued {
				t.Errorf("%d queued, want %d", n, wantQueued)
			}
		})
	}
}

func TestPushStatus(t *testing.T) {
	tests := []struct {
		name   string
		route  string
		status wechat.Status
		want   map[string]any
	}{
		{"queued", "messages", wechat.Status{State: wechat.StateQueued, MsgType: "text"},
			map[string]any{"status": "queued"}},
		{"sending counts as queued", "messages", wechat.Status{State: wechat.StateSending, MsgType: "text", Attempts: 1},
			map[string]any{"status": "queued", "attempts": 1.0}},
		{"delivered", "messages", wechat.Status{State: wechat.StateDelivered, MsgType: "text", Attempts: 1},
			map[string]any{"status": "delivered"}},
		{"failed with WeChat's reason", "messages", wechat.Status{State: wechat.StateFailed, MsgType: "text", Reason: "out of window", ErrCode: 45015, Attempts: 1},
			map[string]any{"status": "failed", "reason": "out of window", "errcode": 45015.0}},
		{"template accepted, job not finished", "templates", wechat.Status{State: wechat.StateDelivered, MsgType: "template", MsgID: 200228332},
			map[string]any{"status": "sent", "msgid": 200228332.0}},
		{"template job success", "templates", wechat.Status{State: wechat.StateDelivered, MsgType: "template", MsgID: 7, TemplateStatus: "success"},
			map[string]any{"status": "delivered", "template_status": "success"}},
		{"template job failed", "templates", wechat.Status{State: wechat.StateDelivered, MsgType: "template", MsgID: 7, TemplateStatus: "failed:user block"},
			map[string]any{"status": "failed", "reason": "failed:user block", "template_status": "failed:user block"}},
		{"template refused by the API", "templates", wechat.Status{State: wechat.StateFailed, MsgType: "template", Reason: "user refused", ErrCode: 43101},
			map[string]any{"status": "failed", "reason": "user refused", "errcode": 43101.0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSender{}
			srv := pushServer(t, &PushConfig{APIKey: testAPIKey, Sender: f})
			body := validText
			if tt.route == "templates" {
				body = validTemplate
			}
			posted := call(t, "POST", srv.URL+"/api/v1/"+tt.route, body, auth())
			id := posted.str("id")
			if id == "" {
				t.Fatalf("post: %s", posted.Raw)
			}
			st := tt.status
			st.ID = id
			f.setStatus(st)

			r := call(t, "GET", srv.URL+"/api/v1/"+tt.route+"/"+id, "", auth())
			if r.Code != 200 || r.str("id") != id {
				t.Fatalf("status %d: %s", r.Code, r.Raw)
			}
			for k, v := range tt.want {
				if r.Body[k] != v {
					t.Errorf("%s = %v, want %v (%s)", k, r.Body[k], v, r.Raw)
				}
			}
			// The same id under the other route is unknown there.
			other := map[string]string{"messages": "templates", "templates": "messages"}[tt.route]
			if r := call(t, "GET", srv.URL+"/api/v1/"+other+"/"+id, "", auth()); r.Code != 404 {
				t.Errorf("GET under /%s: status %d, want 404", other, r.Code)
			}
		})
	}
	t.Run("unknown id", func(t *testing.T) {
		srv := pushServer(t, &PushConfig{APIKey: testAPIKey, Sender: &fakeSender{}})
		for _, route := range []string{"messages", "templates"} {
			r := call(t, "GET", srv.URL+"/api/v1/"+route+"/nope", "", auth())
			if r.Code != 404 || r.str("error") == "" {
				t.Errorf("%s: status %d, want 404 with an error: %s", route, r.Code, r.Raw)
			}
		}
	})
}

// Every route under /api/v1 is documented in openapi.yaml, with the
// answers it can give.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	raw, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		OpenAPI string `yaml:"openapi"`
		Paths   map[string]map[string]struct {
			Responses map[string]any `yaml:"responses"`
		} `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(spec.OpenAPI, "3.") {
		t.Errorf("openapi: %q, want 3.x", spec.OpenAPI)
	}
	e := New(Config{Token: "t", Responder: nopResponder{}, Push: &PushConfig{APIKey: "k", Sender: &fakeSender{}}})
	documented := 0
	for _, r := range e.Routes() {
		if !strings.HasPrefix(r.Path, "/api/v1/") || r.Method == echo.RouteNotFound {
			continue
		}
		path := r.Path
		for _, seg := range strings.Split(r.Path, "/") {
			if strings.HasPrefix(seg, ":") {
				path = strings.Replace(path, seg, "{"+seg[1:]+"}", 1)
			}
		}
		op, ok := spec.Paths[path][strings.ToLower(r.Method)]
		if !ok {
			t.Errorf("%s %s is registered but not in openapi.yaml", r.Method, path)
			continue
		}
		documented++
		if _, ok := op.Responses["401"]; !ok {
			t.Errorf("%s %s: openapi.yaml does not document 401", r.Method, path)
		}
	}
	if documented == 0 {
		t.Fatal("no /api/v1 routes registered")
	}
}

// BenchmarkPushMessage measures the push API's own cost per message:
// auth, strict decoding, validation, the idempotency check and the answer.
func BenchmarkPushMessage(b *testing.B) {
	for _, withKey := range []bool{false, true} {
		b.Run(fmt.Sprintf("idempotency-key=%v", withKey), func(b *testing.B) {
			e := New(Config{Token: "t", Responder: nopResponder{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				Push: &PushConfig{APIKey: testAPIKey, Sender: &fakeSender{}, Window: fakeWindow{}}})
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				req := httptest.NewRequest(http.MethodPost, "/api/v1/messages", strings.NewReader(validText))
				req.Header.Set("Authorization", "Bearer "+testAPIKey)
				if withKey {
					req.Header.Set("Idempotency-Key", strconv.Itoa(i))
				}
				rec := httptest.NewRecorder()
				e.ServeHTTP(rec, req)
				if rec.Code != http.StatusAccepted {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
