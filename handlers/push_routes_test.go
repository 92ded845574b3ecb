package handlers

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Every answer under /api/v1 is JSON: a known path with the wrong method
// is a 405 naming the method to use, an unknown path a 404; neither
// reaches the sender, and neither is answered before the key is checked.
func TestPushWrongMethodAndPath(t *testing.T) {
	f := &fakeSender{}
	srv := pushServer(t, &PushConfig{APIKey: testAPIKey, Sender: f})
	tests := []struct {
		method, path string
		want         int
		allow        string
	}{
		{"GET", "/api/v1/messages", 405, "POST"},
		{"PUT", "/api/v1/messages", 405, "POST"},
		{"DELETE", "/api/v1/templates", 405, "POST"},
		{"PATCH", "/api/v1/templates", 405, "POST"},
		{"POST", "/api/v1/messages/some-id", 405, "GET"},
		{"DELETE", "/api/v1/messages/some-id", 405, "GET"},
		{"PUT", "/api/v1/templates/some-id", 405, "GET"},
		{"HEAD", "/api/v1/templates/some-id", 405, "GET"},
		{"GET", "/api/v1/message", 404, ""},
		{"POST", "/api/v1/messages/a/b", 404, ""},
		{"GET", "/api/v1", 404, ""},
		{"GET", "/api/v1/", 404, ""},
		{"POST", "/api/v2/messages", 404, ""}, // outside the API: the server's own 404
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := call(t, tt.method, srv.URL+tt.path, validText, auth())
			if r.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", r.Code, tt.want, r.Raw)
			}
			if got := r.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
			inAPI := strings.HasPrefix(tt.path, "/api/v1")
			if inAPI && tt.method != "HEAD" && r.str("error") == "" {
				t.Errorf("want a JSON error, got %q %q", r.Header.Get("Content-Type"), r.Raw)
			}
			if tt.want == 405 && tt.method != "HEAD" && !strings.Contains(r.str("error"), "use "+tt.allow) {
				t.Errorf("the error does not say which method to use: %s", r.Raw)
			}
			if inAPI {
				if r := call(t, tt.method, srv.URL+tt.path, validText, nil); r.Code != http.StatusUnauthorized {
					t.Errorf("without the key: status %d, want 401", r.Code)
				}
			}
		})
	}
	if n := f.count(); n != 0 {
		t.Errorf("%d messages queued by requests no route takes", n)
	}
}

// The Authorization header as clients actually write it: the scheme in
// any case, extra spaces around the key.
func TestPushAuthHeaderVariants(t *testing.T) {
	f := &fakeSender{}
	srv := pushServer(t, &PushConfig{APIKey: testAPIKey, Sender: f})
	tests := []struct {
		header string
		want   int
	}{
		{"Bearer " + testAPIKey, 202},
		{"bearer " + testAPIKey, 202},
		{"BEARER " + testAPIKey, 202},
		{"Bearer   " + testAPIKey, 202},
		{"Bearer " + testAPIKey + "   ", 202},
		{"   Bearer " + testAPIKey, 202},
		{"Bearer " + strings.ToUpper(testAPIKey), 401}, // the key itself is case-sensitive
		{"Bearer:" + testAPIKey, 401},
		{"Token " + testAPIKey, 401},
		{testAPIKey, 401},
		{"Bearer " + testAPIKey + " extra", 401},
		{"Bearer", 401},
		{"", 401},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.header), func(t *testing.T) {
			r := call(t, "POST", srv.URL+"/api/v1/messages", validText, map[string]string{"Authorization": tt.header})
			if r.Code != tt.want {
				t.Errorf("status %d, want %d: %s", r.Code, tt.want, r.Raw)
			}
		})
	}
}

// The key store is bounded: once full, a new key is refused with 429 and
// nothing is sent, while the retry of a key already remembered is still
// answered from it; as keys expire, new ones are taken again.
func TestPushIdempotencyKeysBounded(t *testing.T) {
	f := &fakeSender{}
	const ttl = 300 * time.Millisecond
	srv := pushServer(t, &PushConfig{APIKey: testAPIKey, Sender: f, IdempotencyTTL: ttl, MaxIdempotencyKeys: 2})
	post := func(key string) apiResult {
		return call(t, "POST", srv.URL+"/api/v1/messages", validText, withKey(key))
	}
	first := post("k1")
	if r := post("k2"); r.Code != 202 {
		t.Fatalf("second key: status %d: %s", r.Code, r.Raw)
	}
	full := post("k3")
	if full.Code != http.StatusTooManyRequests || full.Header.Get("Retry-After") == "" || !strings.Contains(full.str("error"), "nothing was sent") {
		t.Fatalf("third key: status %d, Retry-After %q: %s; want 429 saying nothing was sent", full.Code, full.Header.Get("Retry-After"), full.Raw)
	}
	if r := post("k1"); r.Code != 202 || r.str("id") != first.str("id") {
		t.Errorf("retry of a remembered key while full: status %d id %q, want 202 and %q", r.Code, r.str("id"), first.str("id"))
	}
	if r := call(t, "POST", srv.URL+"/api/v1/messages", validText, auth()); r.Code != 202 {
		t.Errorf("a request without a key while full: status %d, want 202", r.Code)
	}
	if n := f.count(); n != 3 {
		t.Fatalf("%d queued, want 3 (k1, k2, no key)", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := post("k3")
		if r.Code == 202 {
			break
		}
		if r.Code != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("k3 after the others expired: status %d: %s", r.Code, r.Raw)
		}
		time.Sleep(ttl / 3)
	}
	if n := f.count(); n != 4 {
		t.Errorf("%d queued, want 4", n)
	}
}
