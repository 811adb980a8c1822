package gctune

import (
	"os"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func TestGCPercent(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 400}, {1 << 10, 400}, {4 << 20, 400}, {8 << 20, 200},
		{gcFloor - 1, 100}, {gcFloor, 100}, {1 << 30, 100},
	} {
		if got := gcPercent(c.live); got != c.want {
			t.Errorf("gcPercent(%d) = %d, want %d", c.live, got, c.want)
		}
	}
}

// TestGCTuner: once started, a collection with a small live heap raises
// GOGC above the default.
func TestGCTuner(t *testing.T) {
	if os.Getenv("GOGC") != "" {
		t.Skip("GOGC set in the environment: the tuner stays off")
	}
	Start()
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/heap/live:bytes"}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		time.Sleep(10 * time.Millisecond) // finalizers run on their own goroutine
		metrics.Read(s)
		gogc, live := s[0].Value.Uint64(), s[1].Value.Uint64()
		if live < gcFloor/2 && gogc > 100 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GOGC %d with a live heap of %d bytes", gogc, live)
		}
	}
}
