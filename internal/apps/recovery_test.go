package apps

import (
	"testing"
	"time"
)

func TestNextAttempt(t *testing.T) {
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		n    int64
		want time.Duration
	}{
		{0, 0}, {1, 2 * time.Second}, {2, 5 * time.Second}, {3, 10 * time.Second}, {4, 20 * time.Second},
		{5, 40 * time.Second}, {6, 60 * time.Second}, {7, 2 * time.Minute}, {8, 3 * time.Minute}, {11, 6 * time.Minute},
	} {
		if got := nextAttempt(since, tc.n).Sub(since); got != tc.want {
			t.Errorf("nextAttempt(%d): got %s, want %s", tc.n, got, tc.want)
		}
	}
}
