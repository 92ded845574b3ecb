package wechat_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/wxreply/wxreply/wechat"
)

// BenchmarkSenderThroughput is end-to-end: Enqueue → worker → Client →
// loopback HTTP → the fake API's token and payload checks, for b.N text
// messages spread over 256 users, until every one is delivered.
func BenchmarkSenderThroughput(b *testing.B) {
	for _, workers := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			srv := fakeAPI(b)
			done := make(chan struct{}, 1024)
			s := wechat.NewSender(wechat.SenderOptions{
				Client:    apiClient(srv, nil, nil),
				Workers:   workers,
				QueueSize: b.N + 1,
				Logger:    slog.New(slog.DiscardHandler),
				OnResult: func(r wechat.Result) {
					if !r.Delivered {
						b.Errorf("not delivered: %s", r.Reason)
					}
					done <- struct{}{}
				},
			})
			s.Start()
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_ = s.Shutdown(ctx)
			}()
			items := make([]wechat.Outgoing, b.N)
			for i := range items {
				items[i] = wechat.Outgoing{Custom: textTo(fmt.Sprintf("user-%03d", i%256), "你好 <a href=\"https://example.com/?a=1&b=2\">link</a>")}
			}
			if _, err := s.Enqueue(textOut("warm-up", "token")); err != nil { // token fetch outside the timing
				b.Fatal(err)
			}
			<-done
			b.ResetTimer()
			for _, it := range items {
				if _, err := s.Enqueue(it); err != nil {
					b.Fatal(err)
				}
			}
			for range b.N {
				<-done
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
		})
	}
}

// BenchmarkClientSendCustom is the client alone: parallel SendCustom calls
// sharing one keep-alive pool and one cached token.
func BenchmarkClientSendCustom(b *testing.B) {
	srv := fakeAPI(b)
	c := apiClient(srv, nil, nil)
	if _, err := c.Token(context.Background()); err != nil {
		b.Fatal(err)
	}
	m := textTo("user", "hello")
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.SendCustom(context.Background(), m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
}
