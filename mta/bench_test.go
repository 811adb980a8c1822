package mta_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/harness"
)

// BenchmarkInbound measures inbound acceptance over loopback against the
// real server (harness: bbolt store with fsync, the whole wiring): a new
// connection per message, EHLO, MAIL, RCPT, DATA, QUIT, every 250 durable.
// It reports messages/s, p50 and p99 latency of one whole transaction, and
// the disk's fsync rate measured in the same run for comparison.
//
//	go test -run XXX -bench Inbound -benchtime 2000x ./mta/
func BenchmarkInbound(b *testing.B) {
	for _, size := range []int{1 << 10, 100 << 10} {
		for _, conns := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("size=%dKiB/conns=%d", size>>10, conns), func(b *testing.B) {
				benchInbound(b, size, conns)
			})
		}
	}
}

func benchMessage(size int) string {
	var sb strings.Builder
	sb.WriteString("From: <bench@remote.example>\r\nTo: <alice@example.test>\r\nSubject: bench\r\n\r\n")
	line := strings.Repeat("0123456789abcdef", 4) + "0123456789abcd\r\n" // 80 bytes
	for sb.Len() < size {
		sb.WriteString(line)
	}
	return sb.String()
}

func benchInbound(b *testing.B, size, conns int) {
	env := harness.Start(b, harness.Options{})
	addr := env.Addr("smtp")
	msg := benchMessage(size)
	fsyncs := fsyncRate(b, env.Config.DataPath(""))
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := send(addr, "bench@remote.example", []string{harness.User}, msg, nil); err != nil {
					failed.Add(1)
					b.Errorf("send: %v", err)
				}
				lat[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
	b.ReportMetric(fsyncs, "disk_fsync/s")
	// CPU of the whole process (server and load generator) per message:
	// on a busy shared machine msg/s falls with the CPU share this process
	// gets; this does not.
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu_ms/msg")
	if failed.Load() > 0 {
		b.Errorf("%d sends failed", failed.Load())
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fsyncRate measures how many 4 KiB write+fsync rounds per second the
// disk under dir does, for ~200 ms.
func fsyncRate(b *testing.B, dir string) float64 {
	f, err := os.Create(filepath.Join(dir, "fsync-probe"))
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	n, start := 0, time.Now()
	for time.Since(start) < 200*time.Millisecond {
		if _, err := f.WriteAt(buf, int64(n%64)*4096); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}
