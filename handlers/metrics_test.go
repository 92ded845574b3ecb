package handlers

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func metricsServer(t *testing.T) (*httptest.Server, *Metrics) {
	t.Helper()
	m := NewMetrics()
	srv := httptest.NewServer(New(Config{
		Token: testToken, Responder: &recorder{}, Metrics: m,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}))
	t.Cleanup(srv.Close)
	return srv, m
}

func scrape(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	return string(body)
}

// TestMetrics: requests are counted and timed by method, route pattern
// and status. (The outbox's counters are registered by the server
// package, and tested with it in callback_store_test.go.)
func TestMetrics(t *testing.T) {
	srv, _ := metricsServer(t)
	post(t, signedURL(srv.URL, ""), capture(t, "plain", "text.xml"))
	post(t, srv.URL+"/wechat?signature=bad&timestamp=1&nonce=2", []byte("<xml/>"))
	if resp, err := http.Get(srv.URL + "/no/such/path/12345"); err == nil {
		resp.Body.Close()
	}
	if resp, err := http.Head(srv.URL + "/healthz"); err == nil {
		resp.Body.Close()
	}

	body := scrape(t, srv)
	for _, want := range []string{
		`wxreply_http_requests_total{code="200",method="POST",route="/wechat"} 1`,
		`wxreply_http_requests_total{code="403",method="POST",route="/wechat"} 1`,
		`wxreply_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`wxreply_http_requests_total{code="200",method="HEAD",route="/healthz"} 1`,
		`wxreply_http_request_duration_seconds_count{method="POST",route="/wechat"} 2`,
		"go_goroutines",
		"process_",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "/no/such/path") {
		t.Error("an unknown path became a label value")
	}
}

// TestMetricsMethodsBounded: anyone can send a request with a method of
// their own invention; they must not each become a series. The standard
// methods keep their names, every other is "other".
func TestMetricsMethodsBounded(t *testing.T) {
	srv, m := metricsServer(t)
	const invented = 50
	for i := range invented {
		for _, path := range []string{"/wechat", "/nosuch"} {
			req, err := http.NewRequest(fmt.Sprintf("BREW%02d", i), srv.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		req, _ := http.NewRequest(method, srv.URL+"/wechat", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}

	body := scrape(t, srv)
	if strings.Contains(body, "BREW") {
		t.Error("an invented method became a label value")
	}
	if !strings.Contains(body, `method="other"`) {
		t.Error(`the scrape has no method="other"`)
	}

	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var methods []string
	var other float64
	for _, mf := range families {
		if mf.GetName() != "wxreply_http_requests_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() != "method" {
					continue
				}
				if !slices.Contains(methods, l.GetValue()) {
					methods = append(methods, l.GetValue())
				}
				if l.GetValue() == "other" {
					other += s.GetCounter().GetValue()
				}
			}
		}
	}
	slices.Sort(methods)
	if want := []string{"DELETE", "GET", "OPTIONS", "PATCH", "PUT", "other"}; !slices.Equal(methods, want) {
		t.Errorf("method label values %q, want %q", methods, want)
	}
	if other != 2*invented {
		t.Errorf("%v requests counted as method=\"other\", want %d", other, 2*invented)
	}
}
