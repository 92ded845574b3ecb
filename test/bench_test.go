package test

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wxreply/wxreply/delivery"
	"github.com/wxreply/wxreply/handlers"
	"github.com/wxreply/wxreply/rules"
	"github.com/wxreply/wxreply/server"
	"github.com/wxreply/wxreply/store"
	"github.com/wxreply/wxreply/wechat"
)

// BenchmarkCallback measures the callback path (signature, parse, dedupe,
// match, answer; and in the last case the whole server, recording each
// reply in the in-memory store before answering) beside a minimal handler that only checks the signature,
// decodes the XML and writes success, in the same run, so the ratio holds
// on a noisy machine. Each request carries a fresh MsgId, so dedupe never
// short-cuts the work, and a signed query of its own (signed in the loop,
// for every case alike), as WeChat's callbacks do.
//
//	go test ./test -run '^$' -bench BenchmarkCallback -benchmem -count 10 | tee new.txt
func BenchmarkCallback(b *testing.B) {
	discard := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
	sample, err := rules.Load(filepath.Join("..", "rules.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	big := filepath.Join(b.TempDir(), "10000.yaml")
	if err := os.WriteFile(big, manyRules(10000), 0o644); err != nil {
		b.Fatal(err)
	}
	bigSet, err := rules.Load(big)
	if err != nil {
		b.Fatal(err)
	}
	wxreply := func(d server.Decider) http.Handler {
		var r handlers.Responder = noopResponder{}
		if d != nil {
			r = &server.Responder{Rules: d, Outbox: &countingOutbox{}, Logger: discard, Now: time.Now}
		}
		return handlers.New(handlers.Config{Token: testToken, Responder: r, Logger: discard})
	}
	// The whole server as serve wires it (metrics, health, push routes,
	// the store), with each callback's reply recorded in the in-memory
	// store before the answer. The outbox is not started: the benchmark
	// measures the callback, not delivery.
	srv, err := server.New(server.Config{
		Token: testToken, APIBase: "http://127.0.0.1:1", RulesPath: filepath.Join("..", "rules.yaml"),
		APIKey: "bench", Store: store.Memory, Logger: discard,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	// The same on the default store, a directory.
	dirSrv, err := server.New(server.Config{
		Token: testToken, APIBase: "http://127.0.0.1:1", RulesPath: filepath.Join("..", "rules.yaml"),
		APIKey: "bench", Store: filepath.Join(b.TempDir(), "data"), Logger: discard,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer dirSrv.Close()
	cases := []struct {
		name    string
		h       http.Handler
		content string
	}{
		{"minimal", minimalHandler(), "hi"},
		{"wxreply-no-rules", wxreply(nil), "hi"},
		{"wxreply-sample-rules", wxreply(sample), "hi"},
		{"wxreply-10000-rules-last", wxreply(bigSet), "keyword9999"},
		{"wxreply-server-memory-store", srv.Handler(), "hi"},
		{"wxreply-server-dir-store", dirSrv.Handler(), "hi"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			// Each request is signed for itself, now, as WeChat's are:
			// one signed query serves one body.
			ts := strconv.FormatInt(time.Now().Unix(), 10)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				body := make([]byte, 0, 512)
				for pb.Next() {
					id := benchMsgIDs.Add(1)
					body = appendText(body[:0], c.content, id)
					nonce := strconv.FormatInt(id, 10)
					target := "/wechat?signature=" + wechat.Signature(testToken, ts, nonce) + "&timestamp=" + ts + "&nonce=" + nonce
					req := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
					rec := httptest.NewRecorder()
					c.h.ServeHTTP(rec, req)
					if rec.Code != 200 {
						b.Fatalf("status %d: %s", rec.Code, rec.Body)
					}
				}
			})
		})
	}
}

// benchMsgIDs gives each request of BenchmarkCallback, across its runs
// (-count, the b.N ramp), a MsgId and nonce of its own, so that dedupe
// never short-cuts the work and no signed query serves two bodies.
var benchMsgIDs atomic.Int64

// minimalHandler is the floor: what any callback server must do.
func minimalHandler() http.Handler {
	e := echo.New()
	e.POST("/wechat", func(c echo.Context) error {
		q := c.QueryParams()
		if !wechat.VerifySignature(testToken, q.Get("signature"), q.Get("timestamp"), q.Get("nonce")) {
			return c.NoContent(http.StatusForbidden)
		}
		var m wechat.Message
		if err := xml.NewDecoder(c.Request().Body).Decode(&m); err != nil {
			return c.NoContent(http.StatusBadRequest)
		}
		return c.String(http.StatusOK, "success")
	})
	return e
}

func appendText(b []byte, content string, msgID int64) []byte {
	b = append(b, "<xml><ToUserName><![CDATA[gh_test0000001]]></ToUserName><FromUserName><![CDATA[oBENCH_user]]></FromUserName><CreateTime>"...)
	b = strconv.AppendInt(b, time.Now().Unix(), 10) // as WeChat's: the second it was sent
	b = append(b, "</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA["...)
	b = append(b, content...)
	b = append(b, "]]></Content><MsgId>"...)
	b = strconv.AppendInt(b, msgID, 10)
	return append(b, "</MsgId></xml>"...)
}

// manyRules is a rules file of n rules, every kind of text match in turn;
// rule i answers keyword<i>.
func manyRules(n int) []byte {
	var b bytes.Buffer
	b.WriteString("rules:\n")
	for i := 0; i < n; i++ {
		kind := [...]string{"equals", "contains", "prefix"}[i%3]
		fmt.Fprintf(&b, "  - name: r%d\n    match:\n      text:\n        %s: [keyword%d]\n    reply:\n      - text: reply %d\n", i, kind, i, i)
	}
	return b.Bytes()
}

type noopResponder struct{}

func (noopResponder) Respond(context.Context, *wechat.Message) ([]byte, error) { return nil, nil }

// countingOutbox accepts replies and drops them: the benchmark measures
// the callback, not the store or delivery.
type countingOutbox struct{ n atomic.Int64 }

func (o *countingOutbox) Accept(_ context.Context, r delivery.Request) (delivery.Accepted, error) {
	o.n.Add(int64(len(r.Items)))
	return delivery.Accepted{}, nil
}

func (o *countingOutbox) TemplateFinished(context.Context, string, string) error { return nil }

// BenchmarkServeCallback is the callback as `wxreply serve` runs it, in
// process, for profiling: server.New over the directory store, JSON logs
// at INFO through the LogBuffer into a file, metrics on; "location" is a
// LOCATION event that no rule answers, "text" the "hi" that the greeting
// rule answers with a reply recorded in the store. 32 goroutines call at
// once, as wrk's 32 connections do (TestWrkBinary is the figure that
// counts: this one has no network).
//
//	go test ./test -run '^$' -bench BenchmarkServeCallback -cpuprofile cpu.out
func BenchmarkServeCallback(b *testing.B) {
	logs, err := os.Create(filepath.Join(b.TempDir(), "wxreply.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logs.Close()
	lb := server.NewLogBuffer(logs)
	defer lb.Close()
	log := slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := server.New(server.Config{
		Token: testToken, APIBase: "http://127.0.0.1:1", RulesPath: filepath.Join("..", "rules.yaml"),
		Store: filepath.Join(b.TempDir(), "data"), Logger: log, LogBuffer: lb,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	h := srv.Handler()
	for _, kind := range []string{"location", "text"} {
		b.Run(kind, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(16) // 32 goroutines on two cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				body := make([]byte, 0, 512)
				for pb.Next() {
					id := benchMsgIDs.Add(1)
					if kind == "location" {
						body = appendLocation(body[:0], id)
					} else {
						body = appendText(body[:0], "hi", id)
					}
					// Signed the second it is sent, as WeChat signs.
					nonce, ts := strconv.FormatInt(id, 10), strconv.FormatInt(time.Now().Unix(), 10)
					target := "/wechat?signature=" + wechat.Signature(testToken, ts, nonce) + "&timestamp=" + ts + "&nonce=" + nonce
					req := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != 200 {
						b.Fatalf("status %d: %s", rec.Code, rec.Body)
					}
				}
			})
		})
	}
}

// appendLocation is a LOCATION event, which no rule of the sample
// answers, at CreateTime id so that each is a callback of its own.
func appendLocation(b []byte, id int64) []byte {
	b = append(b, "<xml><ToUserName><![CDATA[gh_test0000001]]></ToUserName><FromUserName><![CDATA[oBENCH_user]]></FromUserName><CreateTime>"...)
	b = strconv.AppendInt(b, id, 10)
	return append(b, "</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[LOCATION]]></Event><Latitude>23.137466</Latitude><Longitude>113.352425</Longitude><Precision>119.385040</Precision></xml>"...)
}
