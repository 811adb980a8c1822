// Package gctune keeps a floor under the garbage collector's heap goal.
package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// A floor under the garbage collector's heap goal.
//
// Go collects once the heap has grown by GOGC percent (100) of the live
// heap, with a goal of at least 4 MiB. A mail server's live heap is small
// — a few MiB with hundreds of connections — while every 100 KiB message
// goes through several hundred KiB of short-lived buffers (the DATA
// buffer, bbolt's pages for its chunks). Under inbound load of 100 KiB
// messages at 32 connections it collected some 60 times a second and
// spent a fifth of its CPU doing so.
//
// After each collection the tuner sets GOGC so that the next one comes
// when the garbage reaches gcFloor or the live heap, whichever is larger:
// GOGC = 100 * gcFloor / live (live heap, stacks and globals, which
// GOGC is a percentage of), at least 100 (see gcPercent). With a live
// heap above gcFloor it is Go's default; below, the heap may hold at most
// gcFloor of garbage more than with the default, which the memory trimmer
// (server/memtrim.go) gives back once the server is quiet. A GOGC set in the
// environment is left alone, and a GOMEMLIMIT still bounds everything.
const (
	gcFloor   = 16 << 20
	goMinHeap = 4 << 20 // the runtime's heapMinimum at GOGC=100
)

var gcTunerOnce sync.Once

// Start installs the tuner once per process: posthorn serve, and the
// benchmarks that measure a part of it.
func Start() {
	if os.Getenv("GOGC") != "" {
		return
	}
	gcTunerOnce.Do(func() {
		t := &gcTuner{samples: []metrics.Sample{
			{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"},
		}, percent: 100}
		t.arm()
	})
}

// gcTuner runs after every collection, as the finalizer of an object it
// drops each time (the pattern of TiDB's gctuner).
type gcTuner struct {
	samples []metrics.Sample
	percent int
}

// gcSentinel must not be a tiny allocation (tiny objects share a block
// and are finalized late): 32 bytes is above the 16-byte tiny size.
type gcSentinel struct {
	t *gcTuner
	_ [24]byte
}

func (t *gcTuner) arm() {
	s := &gcSentinel{t: t}
	runtime.SetFinalizer(s, func(s *gcSentinel) { s.t.tune() })
}

func (t *gcTuner) tune() {
	defer t.arm()
	metrics.Read(t.samples)
	var roots uint64
	for _, s := range t.samples {
		if s.Value.Kind() != metrics.KindUint64 {
			return
		}
		roots += s.Value.Uint64()
	}
	if p := gcPercent(roots); p != t.percent {
		t.percent = p
		debug.SetGCPercent(p)
	}
}

// gcPercent is the GOGC that puts the next collection about gcFloor of
// garbage past the live heap. live counts what GOGC is a percentage of:
// the live heap, the stacks and the globals. Go's minimum heap goal, 4 MiB
// at GOGC=100, scales with GOGC too, so live is taken as at least that:
// the goal is then never above about gcFloor plus the live heap.
func gcPercent(live uint64) int {
	return int(max(100*uint64(gcFloor)/max(live, goMinHeap), 100))
}
