package handlers

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// Every answer under /api/v1 is JSON: a known path with the wrong method
// is a 405 naming the method to use, an unknown path a 404; neither
// reaches the outbox, and neither is answered before the key is checked.
func TestPushWrongMethodAndPath(t *testing.T) {
	env := newPushEnv(t, pushOptions{})
	srv := env.srv
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
	if n := env.pending(t); n != 0 {
		t.Errorf("%d messages queued by requests no route takes", n)
	}
}

// The Authorization header as clients actually write it: the scheme in
// any case, extra spaces around the key.
func TestPushAuthHeaderVariants(t *testing.T) {
	srv := newPushEnv(t, pushOptions{}).srv
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
