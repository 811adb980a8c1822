package mailio

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/posthorn/posthorn/store"
)

// present finds the messages of an import that the mailbox already holds
// byte for byte, so that an import run again after it was cut off (Ctrl-C,
// a full disk, a restart) goes on where it stopped instead of storing the
// first part twice. Each message held before the import matches at most
// one imported message: a source that holds the same message twice gets it
// twice, and a mailbox that held it once before gets the second copy.
//
// A mailbox is indexed when the import first comes to it, before anything
// of this import is appended to it, by size alone; bodies of the same size
// are read and hashed only when an imported message has that size.
type present struct {
	st      store.Store
	account string
	boxes   map[string]*heldIndex
}

// heldIndex is what one mailbox held before the import, not yet matched.
type heldIndex struct {
	bySize map[int64][]store.Message
	sums   map[uint32][sha256.Size]byte
}

func newPresent(st store.Store, account string) *present {
	return &present{st: st, account: account, boxes: map[string]*heldIndex{}}
}

// has reports whether mailbox held body before the import and no earlier
// message of the import matched that copy; if so, the copy is taken.
func (p *present) has(mailbox string, body []byte) (bool, error) {
	box, ok := p.boxes[mailbox]
	if !ok {
		msgs, err := p.st.Messages(p.account, mailbox)
		if err != nil {
			return false, err
		}
		box = &heldIndex{bySize: map[int64][]store.Message{}, sums: map[uint32][sha256.Size]byte{}}
		for _, m := range msgs {
			box.bySize[m.Size] = append(box.bySize[m.Size], m)
		}
		p.boxes[mailbox] = box
	}
	same := box.bySize[int64(len(body))]
	if len(same) == 0 {
		return false, nil
	}
	want := sha256.Sum256(body)
	for i, m := range same {
		sum, ok := box.sums[m.UID]
		if !ok {
			var err error
			if sum, err = p.sum(m); err != nil {
				return false, err
			}
			box.sums[m.UID] = sum
		}
		if sum == want {
			box.bySize[int64(len(body))] = append(same[:i:i], same[i+1:]...)
			delete(box.sums, m.UID)
			return true, nil
		}
	}
	return false, nil
}

// sum hashes a held message's bytes; one expunged meanwhile (its body
// gone) gets a sum that no body has.
func (p *present) sum(m store.Message) ([sha256.Size]byte, error) {
	b, err := p.st.OpenMessage(m)
	if errors.Is(err, store.ErrNotFound) {
		return [sha256.Size]byte{}, nil
	}
	if err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("reading message %d: %w", m.UID, err)
	}
	defer b.Close()
	h := sha256.New()
	if _, err := io.Copy(h, b); err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("reading message %d: %w", m.UID, err)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum, nil
}
