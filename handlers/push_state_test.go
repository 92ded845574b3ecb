package handlers

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"gopkg.in/yaml.v3"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/store"
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
			env := newPushEnv(t, pushOptions{})
			srv := env.srv
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
			if n := env.pending(t); n != tt.wantSends {
				t.Errorf("%d messages recorded, want %d", n, tt.wantSends)
			}
		})
	}
}

// A refused request is not remembered: the client's retry with the same
// key is tried again and then remembered. That holds for a store that
// could not record it (503), the window's refusal (409) and a request
// that panicked on the way (500).
func TestPushIdempotencyAfterRefusal(t *testing.T) {
	env, f := newFaultyEnv(t)
	srv := env.srv
	env.closeWindow(t, "oClosed")

	f.set(func(f *faultyOutbox) { f.err = fmt.Errorf("%w: disk I/O error", delivery.ErrUnavailable) })
	r := call(t, "POST", srv.URL+"/api/v1/messages", validText, withKey("k"))
	if r.Code != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Fatalf("store unavailable: status %d, Retry-After %q: %s", r.Code, r.Header.Get("Retry-After"), r.Raw)
	}
	f.set(func(f *faultyOutbox) { f.err = nil })
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
	f.set(func(f *faultyOutbox) { f.panics = true })
	if r := call(t, "POST", srv.URL+"/api/v1/messages", validText, withKey("p")); r.Code != http.StatusInternalServerError {
		t.Fatalf("panicking outbox: status %d: %s", r.Code, r.Raw)
	}
	if r := call(t, "POST", srv.URL+"/api/v1/messages", validText, withKey("p")); r.Code != 202 {
		t.Fatalf("key reused after a panic: status %d: %s", r.Code, r.Raw)
	}
	if n := env.pending(t); n != 3 {
		t.Errorf("%d recorded, want 3", n)
	}
}

// Concurrent retries with one key record once and all get the same id:
// the store takes the key and records the message in one step.
func TestPushIdempotencyConcurrent(t *testing.T) {
	env := newPushEnv(t, pushOptions{})
	const n = 32
	ids := make([]string, n)
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := call(t, "POST", env.url("/api/v1/messages"), validText, withKey("same"))
			ids[i], codes[i] = r.str("id"), r.Code
		}()
	}
	wg.Wait()
	for i := range n {
		if codes[i] != 202 || ids[i] != ids[0] || ids[0] == "" {
			t.Fatalf("request %d: status %d id %q, want 202 and %q", i, codes[i], ids[i], ids[0])
		}
	}
	if got := env.pending(t); got != 1 {
		t.Errorf("%d messages recorded by %d concurrent retries, want 1", got, n)
	}
}

// Keys are not capped: the store keeps each for its time, and a caller
// with many distinct keys is never locked out.
func TestPushIdempotencyManyKeys(t *testing.T) {
	env := newPushEnv(t, pushOptions{})
	const keys, workers = 2000, 16
	ids := make([]string, keys)
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r := call(t, "POST", env.url("/api/v1/messages"), validText, withKey("key-"+strconv.Itoa(i)))
				if r.Code != http.StatusAccepted {
					t.Errorf("key %d: status %d: %s", i, r.Code, r.Raw)
				}
				ids[i] = r.str("id")
			}
		}()
	}
	for i := range keys {
		next <- i
	}
	close(next)
	wg.Wait()
	seen := map[string]bool{}
	for i, id := range ids {
		if id == "" || seen[id] {
			t.Fatalf("key %d: id %q, want a new one", i, id)
		}
		seen[id] = true
	}
	if n := env.pending(t); n != keys {
		t.Fatalf("%d recorded, want %d", n, keys)
	}
	// The first key is still remembered after all the others.
	if r := call(t, "POST", env.url("/api/v1/messages"), validText, withKey("key-0")); r.Code != 202 || r.str("id") != ids[0] {
		t.Errorf("key-0 again: status %d id %q, want 202 and %q", r.Code, r.str("id"), ids[0])
	}
	if n := env.pending(t); n != keys {
		t.Errorf("%d recorded after a retry, want %d", n, keys)
	}
}

// What the outbox refuses is answered without recording anything: a
// store that cannot be written is a 503 with Retry-After (the caller
// retries), as is a server shutting down; a message the outbox finds
// invalid is a 422.
func TestPushAcceptRefusals(t *testing.T) {
	posts := []struct{ path, body string }{{"/api/v1/messages", validText}, {"/api/v1/templates", validTemplate}}
	check := func(t *testing.T, env *pushEnv, want int, retryAfter bool, says string) {
		t.Helper()
		for _, p := range posts {
			r := call(t, "POST", env.url(p.path), p.body, auth())
			if r.Code != want || !strings.Contains(r.str("error"), says) {
				t.Errorf("%s: status %d, want %d with an error saying %q: %s", p.path, r.Code, want, says, r.Raw)
			}
			if got := r.Header.Get("Retry-After") != ""; got != retryAfter {
				t.Errorf("%s: Retry-After %q, want one: %v", p.path, r.Header.Get("Retry-After"), retryAfter)
			}
		}
	}
	t.Run("store unavailable", func(t *testing.T) {
		env := newPushEnv(t, pushOptions{})
		posted := call(t, "POST", env.url("/api/v1/messages"), validText, auth())
		if err := env.store.Close(); err != nil {
			t.Fatal(err)
		}
		check(t, env, http.StatusServiceUnavailable, true, "nothing was sent; retry")
		// Asking about a message needs the store too.
		for _, route := range []string{"messages", "templates"} {
			r := call(t, "GET", env.url("/api/v1/"+route+"/"+posted.str("id")), "", auth())
			if r.Code != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || r.str("error") == "" {
				t.Errorf("GET %s with the store closed: status %d, Retry-After %q: %s", route, r.Code, r.Header.Get("Retry-After"), r.Raw)
			}
		}
	})
	t.Run("shutting down", func(t *testing.T) {
		env := newPushEnv(t, pushOptions{start: true})
		if err := env.engine.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		check(t, env, http.StatusServiceUnavailable, true, "shutting down")
		if n := env.pending(t); n != 0 {
			t.Errorf("%d recorded while shutting down", n)
		}
	})
	t.Run("invalid for the outbox", func(t *testing.T) {
		env, f := newFaultyEnv(t)
		f.set(func(f *faultyOutbox) {
			f.err = fmt.Errorf("item 0: %w: touser and msgtype are required", delivery.ErrInvalidOutgoing)
		})
		check(t, env, http.StatusUnprocessableEntity, false, "touser and msgtype are required")
	})
	t.Run("no id recorded", func(t *testing.T) {
		env, f := newFaultyEnv(t)
		f.set(func(f *faultyOutbox) { f.empty = true })
		check(t, env, http.StatusInternalServerError, false, "not recorded")
	})
}

// The window is the store's: users who interacted in the last 48 hours
// are open, users WeChat answered 45015 for and users whose last
// interaction is older are closed, and users the store does not know are
// tried.
func TestPushWindow(t *testing.T) {
	tests := []struct {
		name, path, body string
		want             int
	}{
		{"open", "/api/v1/messages", `{"touser":"oOpen","msgtype":"text","text":{"content":"x"}}`, 202},
		{"unknown user is tried", "/api/v1/messages", `{"touser":"oNew","msgtype":"text","text":{"content":"x"}}`, 202},
		{"known outside", "/api/v1/messages", `{"touser":"oClosed","msgtype":"text","text":{"content":"x"}}`, 409},
		{"last interaction over 48 hours ago", "/api/v1/messages", `{"touser":"oOld","msgtype":"text","text":{"content":"x"}}`, 409},
		{"template ignores the window", "/api/v1/templates", `{"touser":"oClosed","template_id":"T","data":{"a":{"value":"v"}}}`, 202},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newPushEnv(t, pushOptions{})
			env.touch(t, "oOpen", time.Now().Add(-47*time.Hour))
			env.touch(t, "oOld", time.Now().Add(-49*time.Hour))
			env.closeWindow(t, "oClosed")
			r := call(t, "POST", env.url(tt.path), tt.body, auth())
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
			if n := env.pending(t); n != wantQueued {
				t.Errorf("%d queued, want %d", n, wantQueued)
			}
		})
	}
}

// TestPushStatus: GET answers what the store recorded of the message,
// mapped onto the API's statuses. The outcomes are recorded through the
// store as the engine records them (claim, then complete or park).
func TestPushStatus(t *testing.T) {
	ctx := context.Background()
	complete := func(f store.Final) func(*testing.T, *pushEnv) {
		return func(t *testing.T, e *pushEnv) {
			f.Now = time.Now()
			if _, err := e.store.Complete(ctx, e.claim(t), f); err != nil {
				t.Fatal(err)
			}
		}
	}
	jobFinished := func(msgID int64, status string) func(*testing.T, *pushEnv) {
		return func(t *testing.T, e *pushEnv) {
			complete(store.Final{Delivered: true, Attempts: 1, MsgID: msgID})(t, e)
			if err := e.engine.TemplateFinished(ctx, strconv.FormatInt(msgID, 10), status); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name    string
		route   string
		outcome func(*testing.T, *pushEnv) // nil: just accepted
		want    map[string]any
	}{
		{"queued", "messages", nil,
			map[string]any{"status": "queued"}},
		{"being sent counts as queued", "messages", func(t *testing.T, e *pushEnv) { e.claim(t) },
			map[string]any{"status": "queued"}},
		{"waiting for a retry counts as queued", "messages", func(t *testing.T, e *pushEnv) {
			now := time.Now()
			if err := e.store.Retry(ctx, e.claim(t), store.Retry{Now: now, At: now.Add(time.Hour), Attempts: 1, LastError: "dial tcp: connection refused"}); err != nil {
				t.Fatal(err)
			}
		}, map[string]any{"status": "queued", "attempts": 1.0, "last_error": "dial tcp: connection refused"}},
		{"delivered", "messages", complete(store.Final{Delivered: true, Attempts: 1}),
			map[string]any{"status": "delivered", "attempts": 1.0}},
		{"failed with WeChat's reason", "messages", complete(store.Final{Reason: "out of window", ErrCode: 45015, Attempts: 1,
			LastError: "wechat /cgi-bin/message/custom/send: errcode 45015: response out of time limit"}),
			map[string]any{"status": "failed", "reason": "out of window", "errcode": 45015.0, "attempts": 1.0,
				"last_error": "wechat /cgi-bin/message/custom/send: errcode 45015: response out of time limit"}},
		{"template accepted, job not finished", "templates", complete(store.Final{Delivered: true, Attempts: 1, MsgID: 200228332}),
			map[string]any{"status": "sent", "msgid": 200228332.0, "attempts": 1.0}},
		{"template job success", "templates", jobFinished(7, "success"),
			map[string]any{"status": "delivered", "msgid": 7.0, "template_status": "success", "attempts": 1.0}},
		{"template job failed", "templates", jobFinished(7, "failed:user block"),
			map[string]any{"status": "failed", "reason": "failed:user block", "template_status": "failed:user block", "msgid": 7.0, "attempts": 1.0}},
		{"template refused by the API", "templates", complete(store.Final{Reason: "user refused", ErrCode: 43101, Attempts: 1}),
			map[string]any{"status": "failed", "reason": "user refused", "errcode": 43101.0, "attempts": 1.0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newPushEnv(t, pushOptions{})
			body := validText
			if tt.route == "templates" {
				body = validTemplate
			}
			posted := call(t, "POST", env.url("/api/v1/"+tt.route), body, auth())
			id := posted.str("id")
			if id == "" {
				t.Fatalf("post: %s", posted.Raw)
			}
			if tt.outcome != nil {
				tt.outcome(t, env)
			}

			r := call(t, "GET", env.url("/api/v1/"+tt.route+"/"+id), "", auth())
			if r.Code != 200 || r.str("id") != id {
				t.Fatalf("status %d: %s", r.Code, r.Raw)
			}
			for k, v := range tt.want {
				if r.Body[k] != v {
					t.Errorf("%s = %v, want %v (%s)", k, r.Body[k], v, r.Raw)
				}
			}
			for k := range r.Body {
				if _, ok := tt.want[k]; !ok && k != "id" {
					t.Errorf("unexpected %s = %v (%s)", k, r.Body[k], r.Raw)
				}
			}
			// The same id under the other route is unknown there.
			other := map[string]string{"messages": "templates", "templates": "messages"}[tt.route]
			if r := call(t, "GET", env.url("/api/v1/"+other+"/"+id), "", auth()); r.Code != 404 {
				t.Errorf("GET under /%s: status %d, want 404", other, r.Code)
			}
		})
	}
	t.Run("unknown id", func(t *testing.T) {
		env := newPushEnv(t, pushOptions{})
		for _, route := range []string{"messages", "templates"} {
			r := call(t, "GET", env.url("/api/v1/"+route+"/nope"), "", auth())
			if r.Code != 404 || r.str("error") == "" {
				t.Errorf("%s: status %d, want 404 with an error: %s", route, r.Code, r.Raw)
			}
		}
	})
}

// TestPushEndToEnd: pushed messages go out through the real engine to
// the fake WeChat API, and GET follows them: a text delivered, a template
// sent and then delivered when its TEMPLATESENDJOBFINISH arrives, and a
// message WeChat refuses with 45015 failed, after which the user is known
// to be outside the window and the next push is refused with 409.
func TestPushEndToEnd(t *testing.T) {
	env := newPushEnv(t, pushOptions{start: true})
	get := func(route, id string) apiResult {
		t.Helper()
		r := call(t, "GET", env.url("/api/v1/"+route+"/"+id), "", auth())
		if r.Code != 200 {
			t.Fatalf("GET %s/%s: %d %s", route, id, r.Code, r.Raw)
		}
		return r
	}

	text := call(t, "POST", env.url("/api/v1/messages"), validText, auth())
	if res := env.result(t); res.ID != text.str("id") || !res.Delivered {
		t.Fatalf("text: %+v", res)
	}
	if r := get("messages", text.str("id")); r.str("status") != "delivered" {
		t.Errorf("text: %s, want delivered", r.Raw)
	}

	tpl := call(t, "POST", env.url("/api/v1/templates"), validTemplate, auth())
	res := env.result(t)
	if res.ID != tpl.str("id") || !res.Delivered || res.MsgID == 0 {
		t.Fatalf("template: %+v", res)
	}
	if r := get("templates", tpl.str("id")); r.str("status") != "sent" || r.Body["msgid"] != float64(res.MsgID) {
		t.Errorf("template before its job finished: %s, want sent with msgid %d", r.Raw, res.MsgID)
	}
	if err := env.engine.TemplateFinished(context.Background(), strconv.FormatInt(res.MsgID, 10), "success"); err != nil {
		t.Fatal(err)
	}
	if r := get("templates", tpl.str("id")); r.str("status") != "delivered" || r.str("template_status") != "success" {
		t.Errorf("template after its job finished: %s, want delivered", r.Raw)
	}

	env.api.SetOutOfWindow("oGone")
	gone := `{"touser":"oGone","msgtype":"text","text":{"content":"x"}}`
	refused := call(t, "POST", env.url("/api/v1/messages"), gone, auth())
	if refused.Code != 202 {
		t.Fatalf("a user the store does not know is tried: %d %s", refused.Code, refused.Raw)
	}
	if res := env.result(t); res.Delivered || res.ErrCode != 45015 {
		t.Fatalf("out of window: %+v", res)
	}
	if r := get("messages", refused.str("id")); r.str("status") != "failed" || r.Body["errcode"] != 45015.0 || r.str("reason") == "" {
		t.Errorf("out of window: %s, want failed with errcode 45015 and a reason", r.Raw)
	}
	if r := call(t, "POST", env.url("/api/v1/messages"), gone, auth()); r.Code != http.StatusConflict {
		t.Errorf("after WeChat's 45015: status %d, want 409: %s", r.Code, r.Raw)
	}
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
	env := newPushEnv(t, pushOptions{})
	e := New(Config{Token: "t", Responder: nopResponder{}, Logger: discardLog, Push: &PushConfig{APIKey: "k", Outbox: env.engine}})
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

// BenchmarkPushMessage measures the cost per pushed message of the push
// API and the in-memory store behind it: auth, strict decoding,
// validation, the window look-up, recording the message (with its
// Idempotency-Key) and the answer.
func BenchmarkPushMessage(b *testing.B) {
	for _, withKey := range []bool{false, true} {
		b.Run(fmt.Sprintf("idempotency-key=%v", withKey), func(b *testing.B) {
			env := newPushEnv(b, pushOptions{})
			e := New(Config{Token: "t", Responder: nopResponder{}, Logger: discardLog,
				Push: &PushConfig{APIKey: testAPIKey, Outbox: env.engine}})
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
