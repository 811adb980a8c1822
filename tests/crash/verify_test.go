package crash

import (
	"bufio"
	"net/textproto"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/store"
)

// mailboxCounts opens the store offline (the server must be stopped) and
// counts, per account, how many times each X-Crash-ID is stored in any of
// its mailboxes.
func mailboxCounts(t *testing.T, dataDir string) map[string]map[string]int {
	t.Helper()
	st, err := store.Open(filepath.Join(dataDir, "posthorn.db"), store.Options{})
	if err != nil {
		t.Fatalf("open the store after the run: %v", err)
	}
	defer st.Close()
	out := map[string]map[string]int{}
	for _, acct := range localUsers {
		counts := map[string]int{}
		out[acct] = counts
		mboxes, err := st.Mailboxes(acct)
		if err != nil {
			t.Fatalf("mailboxes of %s: %v", acct, err)
		}
		for _, mb := range mboxes {
			msgs, err := st.Messages(acct, mb.Name)
			if err != nil {
				t.Fatalf("messages of %s %s: %v", acct, mb.Name, err)
			}
			for _, m := range msgs {
				id, size, err := crashID(st, m)
				if err != nil {
					t.Fatalf("read %s %s UID %d: %v", acct, mb.Name, m.UID, err)
				}
				if size != m.Size {
					t.Errorf("%s %s UID %d: %d bytes readable, index says %d (half a message)", acct, mb.Name, m.UID, size, m.Size)
				}
				counts[id]++
			}
		}
	}
	return out
}

// crashID reads a stored message whole and returns its X-Crash-ID and the
// number of bytes read.
func crashID(st store.Store, m store.Message) (string, int64, error) {
	b, err := st.OpenMessage(m)
	if err != nil {
		return "", 0, err
	}
	defer b.Close()
	cr := &countingReader{r: b}
	br := bufio.NewReader(cr)
	h, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil {
		return "", 0, err
	}
	if _, err := br.WriteTo(discard{}); err != nil {
		return "", 0, err
	}
	return strings.TrimSpace(h.Get("X-Crash-ID")), cr.n, nil
}

type countingReader struct {
	r interface{ Read([]byte) (int, error) }
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// tally compares what was acknowledged with what arrived.
type tally struct {
	Acked, Lost, Duplicates, Unacked int
	LostIDs                          []string
}

// check counts, for every acknowledged message, its copies per recipient.
// A message not acknowledged may be there or not; if there, more than one
// copy still counts as a duplicate.
func check(msgs []outMsg, l *ledger, local map[string]map[string]int, mx *testMX) tally {
	var tl tally
	for _, m := range msgs {
		acked := l.ok[m.ID] > 0
		if acked {
			tl.Acked++
		} else {
			tl.Unacked++
		}
		for _, to := range m.To {
			n := 0
			if m.Remote {
				n = mx.count(m.ID)
			} else {
				n = local[to][m.ID]
			}
			if n == 0 && acked {
				tl.Lost++
				tl.LostIDs = append(tl.LostIDs, m.ID+" to "+to)
			}
			if n > 1 {
				tl.Duplicates += n - 1
			}
		}
	}
	return tl
}
