package msa_test

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/store"
)

// BenchmarkSubmitToRemoteInbox measures submission on a's port 587 to
// arrival in bob's INBOX on b (a's queue, SMTP over loopback with
// STARTTLS, b's inbound checks and delivery): throughput and the latency
// of each message from the start of its submission to its arrival
// (p50_ms, p99_ms), and the submission alone, until a's 250
// (submit_p50_ms). Four clients submit concurrently.
func BenchmarkSubmitToRemoteInbox(b *testing.B) {
	for _, size := range []int{1 << 10, 100 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) { benchRemote(b, size) })
	}
}

const benchSenders = 4

func benchRemote(b *testing.B, size int) {
	p := startPair(b)
	body := benchBody(size)
	arrived := watchArrivals(b, p.B.Server.Store, b.N)
	clients := make(chan int, b.N)
	for i := range b.N {
		clients <- i
	}
	close(clients)
	starts := make([]time.Time, b.N)
	accepted := make([]time.Duration, b.N) // submission alone: until 250
	b.ResetTimer()
	t0 := time.Now()
	var wg sync.WaitGroup
	for range benchSenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dial(b, p.A, alice, pairPass)
			if err != nil {
				b.Error(err)
				return
			}
			for i := range clients {
				starts[i] = time.Now()
				msg := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: bench\r\nX-Bench-Seq: %d\r\n\r\n%s", alice, bob, i, body)
				if err := send(c, alice, []string{bob}, msg); err != nil {
					b.Error(err)
					return
				}
				accepted[i] = time.Since(starts[i])
			}
		}()
	}
	wg.Wait()
	ends := <-arrived
	elapsed := time.Since(t0)
	b.StopTimer()
	lat := make([]time.Duration, 0, b.N)
	for i, e := range ends {
		lat = append(lat, e.Sub(starts[i]))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99_ms")
	sort.Slice(accepted, func(i, j int) bool { return accepted[i] < accepted[j] })
	b.ReportMetric(float64(accepted[len(accepted)/2].Microseconds())/1000, "submit_p50_ms")
}

// benchBody is size bytes of base64-like lines.
func benchBody(size int) string {
	line := strings.Repeat("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/", 2)[:76] + "\r\n"
	var sb strings.Builder
	for sb.Len() < size {
		sb.WriteString(line)
	}
	return sb.String()
}

// watchArrivals records when each X-Bench-Seq message lands in bob's
// INBOX and sends the times once n have arrived.
func watchArrivals(b *testing.B, st store.Store, n int) <-chan []time.Time {
	ch, cancel := st.Subscribe(bob)
	out := make(chan []time.Time, 1)
	go func() {
		defer cancel()
		ends := make([]time.Time, n)
		seen := 0
		timeout := time.After(5 * time.Minute)
		for seen < n {
			select {
			case ev, ok := <-ch:
				if !ok {
					b.Error("subscription closed")
					out <- ends
					return
				}
				now := time.Now()
				if ev.Kind != store.EventAppend {
					continue
				}
				for _, m := range ev.Messages {
					if i := benchSeq(st, m); i >= 0 && i < n && ends[i].IsZero() {
						ends[i] = now
						seen++
					}
				}
			case <-timeout:
				b.Errorf("only %d of %d messages arrived", seen, n)
				out <- ends
				return
			}
		}
		out <- ends
	}()
	return out
}

func benchSeq(st store.Store, m store.Message) int {
	blob, err := st.OpenMessage(m)
	if err != nil {
		return -1
	}
	defer blob.Close()
	r := bufio.NewReader(io.LimitReader(blob, 16<<10))
	for {
		line, err := r.ReadString('\n')
		if v, ok := strings.CutPrefix(line, "X-Bench-Seq: "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
		if err != nil || line == "\r\n" {
			return -1
		}
	}
}
