package wechat_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/wxreply/wxreply/wechat"
)

// Concurrent callers during a failing fetch share it and its failure.
func TestTokenFailureSharedByConcurrentCallers(t *testing.T) {
	srv := fakeAPI(t)
	srv.FailHTTP(wechat.PathStableToken, 502, 1000)
	c := apiClient(srv, nil, nil)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Token(context.Background())
			var he *wechat.HTTPError
			if !errors.As(err, &he) || he.StatusCode != 502 || !wechat.Retryable(err) {
				t.Errorf("err = %v, want a retryable http 502", err)
			}
		}()
	}
	wg.Wait()
	if got := srv.TokenFetches(); got != 1 {
		t.Errorf("token fetches = %d, want 1", got)
	}
}
