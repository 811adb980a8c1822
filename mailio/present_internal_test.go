package mailio

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/posthorn/posthorn/store"
)

// heldStore holds one mailbox's messages in memory: what present reads.
type heldStore struct {
	store.Store
	msgs   []store.Message
	bodies map[uint32][]byte
}

func (h *heldStore) Messages(string, string) ([]store.Message, error) { return h.msgs, nil }

func (h *heldStore) OpenMessage(m store.Message) (store.Blob, error) {
	return memBlob{bytes.NewReader(h.bodies[m.UID])}, nil
}

type memBlob struct{ *bytes.Reader }

func (memBlob) Close() error { return nil }

// TestPresentManySameSize: an import into a mailbox holding many messages
// of the sizes it brings takes linear time. present compared each
// imported message with every held message of its size, so importing
// 100,000 small messages (sizes a few bytes apart) into a mailbox of
// 50,000 took 173 s; here 20,000 against 20,000 of one size, which took
// tens of seconds that way, must take well under 5 s. Each held copy
// still matches at most one imported message.
func TestPresentManySameSize(t *testing.T) {
	const n = 20000
	body := func(prefix string, i int) []byte {
		return []byte(fmt.Sprintf("Subject: %s%06d\r\n\r\nbody\r\n", prefix, i))
	}
	h := &heldStore{bodies: map[uint32][]byte{}}
	for i := range n {
		b := body("held", i)
		h.msgs = append(h.msgs, store.Message{UID: uint32(i + 1), Size: int64(len(b))})
		h.bodies[uint32(i+1)] = b
	}
	p := newPresent(h, "a@example.test")
	start := time.Now()
	for i := range n {
		if held, err := p.has("INBOX", body("news", i)); held || err != nil {
			t.Fatalf("new message %d: held %v, %v", i, held, err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("%d new messages checked against %d held of their size in %v", n, n, d)
	}
	for _, c := range []struct {
		i    int
		want bool
	}{{7, true}, {n - 1, true}, {7, false}} {
		if held, err := p.has("INBOX", body("held", c.i)); held != c.want || err != nil {
			t.Fatalf("held message %d: held %v, %v; want %v", c.i, held, err, c.want)
		}
	}
}
