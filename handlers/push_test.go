package handlers

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
	"github.com/wxreply/wxreply/wechat/wechattest"
)

const testAPIKey = "k3y-for-tests"

var discardLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// pushEnv is the push API in front of the real outbox: a delivery.Engine
// on an in-memory store, with a WeChat client pointed at the fake API.
// Unless started, the engine records what is accepted and sends nothing,
// so that what the API recorded stays in the store to be looked at.
type pushEnv struct {
	srv     *httptest.Server
	engine  *delivery.Engine
	store   store.Store
	api     *wechattest.Server
	results chan delivery.Result // one per item the engine ended
}

type pushOptions struct {
	start   bool                        // start the engine: items are sent to the fake API
	wrap    func(PushOutbox) PushOutbox // put something in front of the engine
	apiRate float64                     // Config.APIRate; 0: no limit
}

func newPushEnv(t testing.TB, o pushOptions) *pushEnv {
	t.Helper()
	e := &pushEnv{results: make(chan delivery.Result, 1024)}
	e.api = wechattest.NewServer()
	t.Cleanup(e.api.Close)
	st, err := store.Open(store.Memory, store.Options{Logger: discardLog})
	if err != nil {
		t.Fatal(err)
	}
	e.store = st
	t.Cleanup(func() { _ = st.Close() })
	client := wechat.NewClient(wechat.ClientOptions{
		BaseURL: e.api.URL, AppID: wechattest.DefaultAppID, AppSecret: wechattest.DefaultAppSecret, Logger: discardLog,
	})
	t.Cleanup(client.Close)
	e.engine = delivery.New(delivery.Options{
		Store: st, Client: client, Logger: discardLog,
		BaseBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, PollEvery: 10 * time.Millisecond,
		OnResult: func(r delivery.Result) { e.results <- r },
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.engine.Shutdown(ctx)
	})
	if o.start {
		e.engine.Start()
	}
	var out PushOutbox = e.engine
	if o.wrap != nil {
		out = o.wrap(out)
	}
	e.srv = pushServerRate(t, &PushConfig{APIKey: testAPIKey, Outbox: out}, o.apiRate)
	return e
}

func (e *pushEnv) url(path string) string { return e.srv.URL + path }

// pending counts the items recorded and not yet sent.
func (e *pushEnv) pending(t testing.TB) int {
	t.Helper()
	n, err := e.engine.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// status is what the store knows of id.
func (e *pushEnv) status(t testing.TB, id string) store.Status {
	t.Helper()
	s, ok, err := e.store.Status(context.Background(), id)
	if err != nil || !ok {
		t.Fatalf("status of %q: %v, known %v", id, err, ok)
	}
	return s
}

// claim takes the one item waiting, as the engine does before sending it.
func (e *pushEnv) claim(t testing.TB) store.Claim {
	t.Helper()
	cs, _, err := e.store.Claim(context.Background(), time.Now(), 10, time.Minute)
	if err != nil || len(cs) != 1 {
		t.Fatalf("claim: %d claims, %v; want the one item posted", len(cs), err)
	}
	return cs[0]
}

// result waits for the engine to end an item.
func (e *pushEnv) result(t testing.TB) delivery.Result {
	t.Helper()
	select {
	case r := <-e.results:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the engine ended no item within 10s")
	}
	return delivery.Result{}
}

// touch records an interaction of openid at when, which opens its window.
func (e *pushEnv) touch(t testing.TB, openid string, when time.Time) {
	t.Helper()
	if _, err := e.store.Accept(context.Background(), &store.Batch{Now: when, Touch: openid}); err != nil {
		t.Fatal(err)
	}
}

// closeWindow records WeChat's 45015 for openid.
func (e *pushEnv) closeWindow(t testing.TB, openid string) {
	t.Helper()
	now := time.Now()
	if err := e.store.CloseWindow(context.Background(), openid, now, now); err != nil {
		t.Fatal(err)
	}
}

// faultyOutbox is the real outbox behind switches: while err is set,
// Accept fails with it and reaches nothing; while empty is set it
// answers an Accepted without ids; while panics is set the next Accept
// panics.
type faultyOutbox struct {
	PushOutbox
	mu     sync.Mutex
	err    error
	empty  bool
	panics bool
}

func (f *faultyOutbox) Accept(ctx context.Context, r delivery.Request) (delivery.Accepted, error) {
	f.mu.Lock()
	err, empty, panics := f.err, f.empty, f.panics
	f.panics = false
	f.mu.Unlock()
	switch {
	case panics:
		panic("outbox exploded")
	case err != nil:
		return delivery.Accepted{}, err
	case empty:
		return delivery.Accepted{}, nil
	}
	return f.PushOutbox.Accept(ctx, r)
}

func (f *faultyOutbox) set(do func(f *faultyOutbox)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	do(f)
}

// newFaultyEnv is a pushEnv with a faultyOutbox in front of the engine.
func newFaultyEnv(t testing.TB) (*pushEnv, *faultyOutbox) {
	t.Helper()
	var f *faultyOutbox
	e := newPushEnv(t, pushOptions{wrap: func(o PushOutbox) PushOutbox {
		f = &faultyOutbox{PushOutbox: o}
		return f
	}})
	return e, f
}

// pushServer starts the real Echo server with the push API on loopback.
func pushServer(t testing.TB, push *PushConfig) *httptest.Server {
	t.Helper()
	return pushServerRate(t, push, 0)
}

// pushServerRate is pushServer with Config.APIRate.
func pushServerRate(t testing.TB, push *PushConfig, rate float64) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(New(Config{
		Token:     "token",
		Responder: nopResponder{},
		Logger:    discardLog,
		Push:      push,
		APIRate:   rate,
	}))
	t.Cleanup(srv.Close)
	return srv
}

type nopResponder struct{}

func (nopResponder) Respond(context.Context, *wechat.Message) ([]byte, error) { return nil, nil }

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
	env := newPushEnv(t, pushOptions{})
	srv := env.srv
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
	if n := env.pending(t); n != 0 {
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
	env := newPushEnv(t, pushOptions{})
	for name, push := range map[string]*PushConfig{
		"no push config": nil,
		"empty key":      {APIKey: "", Outbox: env.engine},
		"no outbox":      {APIKey: testAPIKey},
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
			env := newPushEnv(t, pushOptions{})
			r := call(t, "POST", env.url(tt.path), tt.body, auth())
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
				} else if st := env.status(t, r.str("id")); st.State != store.StateQueued {
					t.Errorf("the store has %+v, want it queued", st)
				}
			}
			if n := env.pending(t); n != wantQueued {
				t.Errorf("%d messages queued, want %d", n, wantQueued)
			}
		})
	}
}

// TestPushQueuesWhatWasPosted: what the API accepted is what reaches
// WeChat, sent by the real engine to the fake API.
func TestPushQueuesWhatWasPosted(t *testing.T) {
	env := newPushEnv(t, pushOptions{start: true})
	r := call(t, "POST", env.url("/api/v1/messages"), `{"touser":"oA","msgtype":"text","text":{"content":"<a href=\"https://x\">x</a>"}}`, auth())
	if r.Code != 202 || r.Header.Get("Location") != "/api/v1/messages/"+r.str("id") {
		t.Fatalf("status %d, Location %q: %s", r.Code, r.Header.Get("Location"), r.Raw)
	}
	customID := r.str("id")
	r = call(t, "POST", env.url("/api/v1/templates"), validTemplate, auth())
	if r.Code != 202 || r.Header.Get("Location") != "/api/v1/templates/"+r.str("id") {
		t.Fatalf("status %d, Location %q: %s", r.Code, r.Header.Get("Location"), r.Raw)
	}
	templateID := r.str("id")
	for range 2 {
		if res := env.result(t); !res.Delivered {
			t.Fatalf("not delivered: %+v", res)
		}
	}
	custom := env.api.Accepted(wechat.PathCustomSend)
	if len(custom) != 1 {
		t.Fatalf("%d customer-service messages reached WeChat, want 1", len(custom))
	}
	if c := custom[0].Custom; c == nil || c.ToUser != "oA" || c.MsgType != "text" || c.Text == nil || c.Text.Content != `<a href="https://x">x</a>` {
		t.Errorf("customer-service message sent as %s", custom[0].Body)
	}
	tpls := env.api.Accepted(wechat.PathTemplateSend)
	if len(tpls) != 1 {
		t.Fatalf("%d template messages reached WeChat, want 1", len(tpls))
	}
	if tm := tpls[0].Template; tm == nil || tm.ToUser != "oUser1" || tm.TemplateID != "TPL" || tm.Data["first"].Value != "hi" {
		t.Errorf("template sent as %s", tpls[0].Body)
	}
	for id, wantType := range map[string]string{customID: "text", templateID: delivery.MsgTypeTemplate} {
		if st := env.status(t, id); st.Rule != "" || st.MsgType != wantType || st.State != store.StateDelivered {
			t.Errorf("%s recorded as %+v, want no rule, msgtype %s, delivered", id, st, wantType)
		}
	}
}

func TestPushBodyLimit(t *testing.T) {
	env := newPushEnv(t, pushOptions{})
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
		r := call(t, "POST", env.url("/api/v1/messages"), pad(tt.size-base), auth())
		if r.Code != tt.want || r.str("error") == "" && tt.want != 202 {
			t.Errorf("%d bytes: status %d, want %d: %.200s", tt.size, r.Code, tt.want, r.Raw)
		}
	}
	if n := env.pending(t); n != 1 {
		t.Errorf("%d queued, want 1", n)
	}
}
