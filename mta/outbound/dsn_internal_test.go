package outbound

import (
	"testing"
	"time"
)

func TestHumanDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{120 * time.Hour, "5 days"},
		{36 * time.Hour, "1 day 12 hours"},
		{24*time.Hour + 5*time.Minute, "1 day"},
		{4 * time.Hour, "4 hours"},
		{75 * time.Second, "1 minute 15 seconds"},
		{2 * time.Minute, "2 minutes"},
		{300 * time.Millisecond, "less than a second"},
	} {
		if got := humanDuration(tc.d); got != tc.want {
			t.Errorf("humanDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
