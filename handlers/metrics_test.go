package handlers

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/wxreply/wxreply/wechat"
)

func TestMetrics(t *testing.T) {
	m := NewMetrics()
	stats := wechat.Stats{Enqueued: 7, Delivered: 5, Failed: 1, Retried: 3, OutOfWindow: 1, Queued: 1}
	m.Registry.MustRegister(SenderCollector(func() wechat.Stats { return stats }))
	srv := httptest.NewServer(New(Config{
		Token: testToken, Responder: &recorder{}, Metrics: m,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}))
	defer srv.Close()

	post(t, signedURL(srv.URL, ""), capture(t, "plain", "text.xml"))
	post(t, srv.URL+"/wechat?signature=bad&timestamp=1&nonce=2", []byte("<xml/>"))
	if resp, err := http.Get(srv.URL + "/no/such/path/12345"); err == nil {
		resp.Body.Close()
	}

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	for _, want := range []string{
		`wxreply_http_requests_total{code="200",method="POST",route="/wechat"} 1`,
		`wxreply_http_requests_total{code="403",method="POST",route="/wechat"} 1`,
		`wxreply_http_request_duration_seconds_count{method="POST",route="/wechat"} 2`,
		"wxreply_replies_enqueued_total 7",
		"wxreply_replies_delivered_total 5",
		"wxreply_replies_failed_total 1",
		"wxreply_replies_retried_total 3",
		"wxreply_replies_out_of_window_total 1",
		"wxreply_replies_queued 1",
		"go_goroutines",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(string(body), "/no/such/path") {
		t.Error("an unknown path became a label value")
	}
}
