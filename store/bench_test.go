package store_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wxreply/wxreply/store"
)

// reportCommits reports the group commit's figures over the timed part:
// operations per COMMIT, and the mean time a transaction took.
func reportCommits(b *testing.B, s *store.SQLite, before store.Stats) {
	after := s.Stats()
	commits := after.Commits - before.Commits
	if commits == 0 {
		return
	}
	b.ReportMetric(float64(after.Ops-before.Ops)/float64(commits), "ops/commit")
	b.ReportMetric((after.CommitSeconds-before.CommitSeconds)/float64(commits)*1e6, "µs/commit")
}

// BenchmarkAccept records one item per batch from many goroutines, as
// concurrent callbacks do, on a directory.
func BenchmarkAccept(b *testing.B) {
	for _, par := range []int{1, 16} {
		b.Run(fmt.Sprintf("goroutines=%dxGOMAXPROCS", par), func(b *testing.B) {
			s, err := store.OpenSQLite(store.SQLiteOptions{Dir: b.TempDir(), Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			payload := []byte(`{"touser":"o6_bmjrPTlm6_2sgVt7hMZOPfL2M","msgtype":"text","text":{"content":"Hello World"}}`)
			var n atomic.Int64
			b.SetParallelism(par)
			b.ReportAllocs()
			before := s.Stats()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					_, err := s.Accept(b.Context(), &store.Batch{Now: base, Touch: fmt.Sprint("u", i%1000),
						Dedupe: fmt.Sprint("msg-", i), DedupeTTL: time.Minute, Answer: []byte("success"),
						Items: []store.NewItem{{ID: fmt.Sprint("id-", i), OpenID: fmt.Sprint("u", i%1000), MsgType: "text", Payload: payload}}})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			reportCommits(b, s, before)
		})
	}
}

// BenchmarkClaimComplete claims and completes items of distinct users
// from several goroutines, as the senders do; an op is one item.
func BenchmarkClaimComplete(b *testing.B) {
	s, err := store.OpenSQLite(store.SQLiteOptions{Dir: b.TempDir(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	payload := []byte(`{"touser":"o6_bmjrPTlm6_2sgVt7hMZOPfL2M","msgtype":"text","text":{"content":"Hello World"}}`)
	for i := 0; i < b.N; {
		batch := &store.Batch{Now: base}
		for ; i < b.N && len(batch.Items) < 500; i++ {
			batch.Items = append(batch.Items, store.NewItem{ID: fmt.Sprint("id-", i), OpenID: fmt.Sprint("u", i), MsgType: "text", Payload: payload})
		}
		if _, err := s.Accept(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.SetParallelism(4)
	b.ReportAllocs()
	before := s.Stats()
	b.ResetTimer()
	// Each iteration claims one item and completes it; every item has a
	// lane of its own, so a claim always finds one.
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cs, _, err := s.Claim(b.Context(), base, 1, time.Minute)
			if err != nil || len(cs) != 1 {
				b.Errorf("Claim = %d claims, %v", len(cs), err)
				return
			}
			if _, err := s.Complete(b.Context(), cs[0], store.Final{Now: base, Delivered: true, Attempts: 1}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	reportCommits(b, s, before)
}
