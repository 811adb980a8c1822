package hostile

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/store"
)

// TestSEARCHTextLargeMailbox runs SEARCH TEXT over a mailbox of 10,000
// messages of 4 KiB (100,000 with POSTHORN_HOSTILE_SEARCH_N=100000, as
// `make crashtest` runs it; 2,000 under -race in `make test`). The search reads every body and must stream
// them: one needle is found, in bounded time and memory.
//
// Memory budget: 32 MiB plus 1.25 KiB per message during the search (the
// selected mailbox's index and cached envelopes, with GC slack: 44 MiB at
// 10,000 messages, 154 MiB at 100,000). The bodies are 4 KiB each, so a
// search that held them together would pass it (400 MB at 100,000).
func TestSEARCHTextLargeMailbox(t *testing.T) {
	n := envInt("POSTHORN_HOSTILE_SEARCH_N", size(10_000, 2_000))
	env := start(t, nil)
	needle := n * 2 / 3
	uids := seedMailbox(t, env.Server.Store, n, func(i int) []byte {
		word := "haystack"
		if i == needle {
			word = "needle7q"
		}
		body := strings.Repeat("lorem ipsum dolor sit amet consectetur adipiscing elit\r\n", 70)
		return []byte(fmt.Sprintf("From: <s%d@peer.test>\r\nSubject: message %d\r\n\r\n%s%s\r\n", i%7, i, body, word))
	})
	tc := imapLogin(t, env)
	tc.deadline(5 * time.Minute)
	tc.imapOK("S", "SELECT INBOX")
	mem := watchMem()
	var lines []string
	took := within(t, fmt.Sprintf("SEARCH TEXT over %d messages", n), time.Duration(n/100+10)*time.Second, func() {
		lines = tc.imapOK("Q", "UID SEARCH TEXT needle7q")
	})
	t.Logf("SEARCH TEXT over %d messages: %v", n, took)
	want := fmt.Sprintf("* SEARCH %d", uids[needle])
	if len(lines) != 2 || strings.TrimSpace(lines[0]) != want {
		t.Errorf("SEARCH TEXT: want %q, got %q", want, lines)
	}
	mem.check(t, fmt.Sprintf("SEARCH TEXT over %d messages", n), 32<<20+uint64(n)*1280)
}

// seedMailbox appends n messages to the harness user's INBOX from 32
// goroutines, so that the store's group commit batches them, and returns
// the UID of each.
func seedMailbox(t *testing.T, st store.Store, n int, body func(i int) []byte) []uint32 {
	t.Helper()
	t0 := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	uids := make([]uint32, n)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				d, err := st.Append(context.Background(), harness.User, "INBOX", store.NewMessage{Body: body(i)})
				if err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				uids[i] = d.UID
			}
		}()
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		t.Fatalf("seeding: %v", err)
	}
	t.Logf("seeded %d messages in %v", n, time.Since(t0))
	return uids
}
