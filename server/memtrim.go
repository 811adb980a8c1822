package server

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Returning memory after a burst.
//
// Go's background scavenger gives freed heap back to the OS slowly, and
// only down to about 10% above the next GC goal. After a burst — a
// thousand logins each hashing with argon2id's tens of MiB, a big import,
// a full-body FETCH of a large mailbox — an idle server therefore keeps
// hundreds of MiB resident that it no longer uses. The trimmer watches the
// allocation rate; once the process has been quiet for one tick it
// releases the database pages the process has mapped while reading or
// writing (store.ReleaseMapped: they stay in the page cache) and, if more
// than trimMinFree of free heap is still held, runs debug.FreeOSMemory
// (one GC, then every free page back to the OS). Under steady load it does nothing, so it costs
// no throughput.
const (
	trimInterval = time.Second
	// trimQuietBytes is the most a quiet process allocates per tick.
	trimQuietBytes = 1 << 20
	// trimMinFree is the least free heap worth a trim.
	trimMinFree = 4 << 20
)

// memReading is what the trimmer reads each tick.
type memReading struct {
	allocs uint64 // bytes allocated since the start (cumulative)
	free   uint64 // heap that is free but still held from the OS
}

func readMem(samples []metrics.Sample) memReading {
	metrics.Read(samples)
	var r memReading
	if samples[0].Value.Kind() == metrics.KindUint64 {
		r.allocs = samples[0].Value.Uint64()
	}
	if samples[1].Value.Kind() == metrics.KindUint64 {
		r.free = samples[1].Value.Uint64()
	}
	return r
}

// trimmer decides, from two consecutive readings, what to give back.
// On the first quiet tick after activity it releases the mapped database
// pages, however little heap is free: after a burst of appends or reads
// that allocated little garbage (IMAP APPENDs, a POP3 download) the map
// can hold a gigabyte of the file while the heap holds a few MiB. It
// frees the heap when more than trimMinFree of it is free. After either
// it waits for new activity before doing it again, so a quiet process
// pays for one GC, not one per tick.
type trimmer struct {
	last     memReading
	trimmed  bool // heap: nothing allocated worth mentioning since the last trim
	released bool // mapped pages: likewise since the last release
}

// step reports whether to free the heap and whether to release the
// mapped pages.
func (t *trimmer) step(now memReading) (freeHeap, release bool) {
	allocated := now.allocs - t.last.allocs
	t.last = now
	if allocated >= trimQuietBytes {
		t.trimmed, t.released = false, false
		return false, false // busy: the scavenger and the GC keep up
	}
	release, t.released = !t.released, true
	if !t.trimmed && now.free >= trimMinFree {
		freeHeap, t.trimmed = true, true
	}
	return freeHeap, release
}

// trimMemory runs the trimmer until ctx ends; release, if not nil, is
// called after each trim.
func trimMemory(ctx context.Context, release func() error) error {
	samples := []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
	}
	t := &trimmer{last: readMem(samples)}
	tick := time.NewTicker(trimInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		freeHeap, releaseMapped := t.step(readMem(samples))
		if freeHeap {
			debug.FreeOSMemory()
		}
		if releaseMapped && release != nil {
			release() // an optimisation: an error changes nothing
		}
		if freeHeap || releaseMapped {
			// The GC of FreeOSMemory allocates a little; do not count it
			// as new activity.
			t.last = readMem(samples)
		}
	}
}
