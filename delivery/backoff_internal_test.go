package delivery

import (
	"testing"
	"time"
)

// The wait before retry n doubles from the base up to the cap, with
// "equal jitter": at least half of it fixed, the rest random.
func TestBackoffGrowsWithJitterAndCap(t *testing.T) {
	base, maxWait := 100*time.Millisecond, time.Second
	tests := []struct {
		retry    int
		min, max time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond}, // after a 45009 probe, no attempt counted
		{1, 50 * time.Millisecond, 100 * time.Millisecond},
		{2, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 200 * time.Millisecond, 400 * time.Millisecond},
		{4, 400 * time.Millisecond, 800 * time.Millisecond},
		{5, 500 * time.Millisecond, time.Second},
		{60, 500 * time.Millisecond, time.Second},
		{1 << 20, 500 * time.Millisecond, time.Second},
	}
	for _, tt := range tests {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := backoff(base, maxWait, tt.retry)
			if d < tt.min || d > tt.max {
				t.Fatalf("retry %d: %v outside [%v, %v]", tt.retry, d, tt.min, tt.max)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("retry %d: only %d distinct waits: no jitter", tt.retry, len(seen))
		}
	}
}

// A cap below the base, or equal to it, is the wait's bound.
func TestBackoffCapBelowBase(t *testing.T) {
	for range 100 {
		if d := backoff(time.Second, 10*time.Millisecond, 3); d < 5*time.Millisecond || d > 10*time.Millisecond {
			t.Fatalf("backoff = %v, want within the cap", d)
		}
	}
}
