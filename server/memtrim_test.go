package server

import (
	"context"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

func TestTrimmerDecisions(t *testing.T) {
	tr := &trimmer{}
	steps := []struct {
		allocs, free      uint64
		freeHeap, release bool
		why               string
	}{
		{100 << 20, 200 << 20, false, false, "busy: 100 MiB allocated in the tick"},
		{100<<20 + 1000, 200 << 20, true, true, "quiet with 200 MiB free"},
		{100<<20 + 2000, 200 << 20, false, false, "still quiet, already trimmed"},
		{300 << 20, 50 << 20, false, false, "busy again"},
		// After appends that left little garbage, the map may still
		// hold much of the file.
		{300<<20 + 10, 1 << 20, false, true, "quiet but little free"},
		{300<<20 + 20, 10 << 20, true, false, "quiet, free grew past the minimum"},
		{300<<20 + 30, 10 << 20, false, false, "quiet, both done"},
	}
	for _, s := range steps {
		freeHeap, release := tr.step(memReading{allocs: s.allocs, free: s.free})
		if freeHeap != s.freeHeap || release != s.release {
			t.Fatalf("%s: free heap %v, release %v; want %v, %v", s.why, freeHeap, release, s.freeHeap, s.release)
		}
	}
}

var sink [][]byte

// TestTrimMemoryReturnsFreedHeap: after 256 MiB allocated and dropped,
// the running trimmer gives the free heap back within a few ticks.
func TestTrimMemoryReturnsFreedHeap(t *testing.T) {
	samples := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/memory/classes/heap/free:bytes"}}
	for i := 0; i < 256; i++ {
		sink = append(sink, make([]byte, 1<<20))
	}
	sink = nil
	runtime.GC()
	if free := readMem(samples).free; free < 64<<20 {
		t.Skipf("the runtime already returned the memory (%d MiB free held)", free>>20)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var released atomic.Int32
	go func() { done <- trimMemory(ctx, func() error { released.Add(1); return nil }) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if free := readMem(samples).free; free < trimMinFree && released.Load() > 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("free heap still %d MiB after 10 s", readMem(samples).free>>20)
}
