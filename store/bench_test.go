package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/posthorn/posthorn/internal/gctune"
)

// Benchmarks, with figures reported through b.ReportMetric:
//
//	go test -run '^$' -bench . -benchtime 2000x ./store/
//
// Each Append benchmark measures, in the same run and directory, the
// raw rate of write+fsync of a small file by one writer, and reports
// how many times that rate the store reaches ("x-raw-fsync"); likewise
// for 1 KiB appends to a growing file, each fsynced ("x-append-fsync"),
// the single-writer rate of a naive durable mail store. fsync/msg counts
// the store's fdatasyncs: one per log write, two per checkpoint (see
// wal.go); bbolt's own commits (BenchmarkAppendNoWAL) take two each.
// disk-B/stored-B is the file's used size (bbolt's high-water mark,
// without the preallocated tail) per body byte.
//
// The benchmarks run under posthorn serve's garbage-collector tuning
// (internal/gctune), unless GOGC is set: the store's cost is measured as
// the server pays it.

// benchDir is on the disk under test: $POSTHORN_BENCH_DIR or a temp dir.
func benchDir(b *testing.B) string {
	if d := os.Getenv("POSTHORN_BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "bench")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}

// rawFsyncRate measures single-writer write+fsync of 1 KiB per second.
func rawFsyncRate(b *testing.B, dir string) float64 {
	f, err := os.Create(filepath.Join(dir, "fsync-probe"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1024)
	n, start := 0, time.Now()
	for time.Since(start) < 500*time.Millisecond {
		if _, err := f.WriteAt(buf, int64(n%64)*1024); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}

// appendFsyncRate measures single-writer durable appends to a growing
// file: 1 KiB written at the end, then fsync, as a store that appends
// each message to a log (or writes a file per message) must do. Each
// fsync then also commits the file's new size and blocks (the ext4
// journal), which the overwrite probe above does not.
func appendFsyncRate(b *testing.B, dir string) float64 {
	f, err := os.Create(filepath.Join(dir, "fsync-append-probe"))
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 1024)
	n, start := 0, time.Now()
	for time.Since(start) < 500*time.Millisecond {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}

func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{1 << 10, 100 << 10} {
		for _, workers := range []int{1, 32} {
			b.Run(fmt.Sprintf("%dKiB-%dgoroutines", size>>10, workers), func(b *testing.B) {
				benchmarkAppend(b, size, workers, Options{})
			})
		}
	}
}

// BenchmarkAppendNoWAL is BenchmarkAppend/1KiB with bbolt's own synced
// commits instead of the write-ahead log, for comparison.
func BenchmarkAppendNoWAL(b *testing.B) {
	for _, workers := range []int{1, 32} {
		b.Run(fmt.Sprintf("1KiB-%dgoroutines", workers), func(b *testing.B) {
			benchmarkAppend(b, 1<<10, workers, Options{NoWAL: true})
		})
	}
}

func benchmarkAppend(b *testing.B, size, workers int, opts Options) {
	gctune.Start()
	dir := benchDir(b)
	st, err := Open(filepath.Join(dir, "posthorn.db"), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	st.AddDomain("example.test")
	st.AddAccount(alice, "h")
	body := testMessage("bench", size)
	rawBefore := rawFsyncRate(b, dir)
	appendBefore := appendFsyncRate(b, dir)
	before, _ := StatsOf(st)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	cpuBefore := cpuTime()
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := st.Append(context.Background(), alice, "INBOX", NewMessage{Body: body}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpuBefore
	b.StopTimer()
	after, _ := StatsOf(st)
	// Other processes share the disk: the raw rate is sampled before and
	// after, and the mean used.
	raw := (rawBefore + rawFsyncRate(b, dir)) / 2
	appendRaw := (appendBefore + appendFsyncRate(b, dir)) / 2
	rate := float64(b.N) / elapsed.Seconds()
	commits := float64(after.Commits-before.Commits) / float64(b.N)
	b.ReportMetric(rate, "msg/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/msg")
	b.ReportMetric(commits, "commits/msg")
	b.ReportMetric(float64(after.Fsyncs-before.Fsyncs)/float64(b.N), "fsync/msg")
	b.ReportMetric(raw, "raw-fsync/s")
	b.ReportMetric(rate/raw, "x-raw-fsync")
	b.ReportMetric(appendRaw, "append-fsync/s")
	b.ReportMetric(rate/appendRaw, "x-append-fsync")
	if c := after.Commits - before.Commits; c > 0 {
		b.ReportMetric(float64(after.CommitTime-before.CommitTime)/float64(c)/1e6, "ms/commit")
	}
	b.ReportMetric(float64(after.DataSize)/float64(int64(b.N)*int64(len(body))), "disk-B/stored-B")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// metadataStore is one store with 100,000 1 KiB messages in INBOX, built
// once for the metadata benchmark.
var metadataStore = struct {
	once sync.Once
	s    *boltStore
	dir  string
	err  error
}{}

const metadataMessages = 100000

func loadMetadataStore(b *testing.B) *boltStore {
	m := &metadataStore
	m.once.Do(func() {
		m.dir, m.err = os.MkdirTemp("", "posthorn-bench")
		if m.err != nil {
			return
		}
		var st Store
		st, m.err = Open(filepath.Join(m.dir, "posthorn.db"), Options{NoSync: true})
		if m.err != nil {
			return
		}
		m.s = st.(*boltStore)
		m.s.AddDomain("example.test")
		m.s.AddAccount(alice, "h")
		// Bulk load in large transactions (setup only).
		for i := 0; i < metadataMessages && m.err == nil; i += 5000 {
			m.err = m.s.update(func(t *txn) error {
				acct, _ := t.account(alice)
				mb, _ := t.mailbox(alice, "INBOX")
				for j := i; j < i+5000; j++ {
					body := testMessage(fmt.Sprintf("m%d", j), 1024)
					id, err := t.putBlob(body, parseBlobInfo(body, Options{}), 1)
					if err != nil {
						return err
					}
					if _, err := t.addMessage(alice, &acct, &mb, Message{Size: int64(len(body)), InternalDate: time.Now(), BlobID: id}); err != nil {
						return err
					}
				}
				t.putMailbox(alice, mb)
				return t.putAccount(acct)
			})
		}
	})
	if m.err != nil {
		b.Fatal(m.err)
	}
	return m.s
}

// BenchmarkMetadata100k reads what a header sync needs for a mailbox of
// 100,000 messages: the index (Messages) and the parsed envelopes and
// body structures (BlobInfos).
func BenchmarkMetadata100k(b *testing.B) {
	s := loadMetadataStore(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		msgs, err := s.Messages(alice, "INBOX")
		if err != nil || len(msgs) != metadataMessages {
			b.Fatalf("%d messages, %v", len(msgs), err)
		}
		ids := make([]uint64, len(msgs))
		for j, m := range msgs {
			ids[j] = m.BlobID
		}
		infos, err := s.BlobInfos(ids)
		if err != nil || len(infos) != metadataMessages {
			b.Fatalf("%d infos, %v", len(infos), err)
		}
	}
	b.StopTimer()
	perOp := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(metadataMessages/perOp, "msg/s")
	st, _ := StatsOf(s)
	b.ReportMetric(float64(st.DataSize)/float64(metadataMessages*int64(len(testMessage("m0", 1024)))), "disk-B/stored-B")
}

// BenchmarkParse is the one-time parse of a 100 KiB multipart message.
func BenchmarkParse(b *testing.B) {
	msg := []byte("From: a@example.org\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n")
	msg = append(msg, testMessage("x", 100<<10)...)
	msg = append(msg, "\r\n--b--\r\n"...)
	b.SetBytes(int64(len(msg)))
	for i := 0; i < b.N; i++ {
		parseBlobInfo(msg, Options{})
	}
}

// BenchmarkDecodeBlobInfo decodes one stored BlobInfo of a multipart
// message (what a header sync does per message).
func BenchmarkDecodeBlobInfo(b *testing.B) {
	body, err := os.ReadFile("testdata/mime/attachment.eml")
	if err != nil {
		b.Fatal(err)
	}
	rec := encodeBlobInfo(parseBlobInfo(body, Options{}))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := decodeBlobInfo(1, rec); err != nil {
			b.Fatal(err)
		}
	}
}
