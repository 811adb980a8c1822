package membudget

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

var errBig = errors.New("too big")

// TestHold: budget is held in steps, a refusal holds nothing more, and
// Give returns it all.
func TestHold(t *testing.T) {
	b := New(4 * Step)
	var a, c int64
	if !b.Hold(&a, 1) || a != Step || b.Used() != Step {
		t.Fatalf("hold 1 byte: held %d, used %d, want one step", a, b.Used())
	}
	if !b.Hold(&a, Step) || a != Step {
		t.Fatalf("hold within what is held: held %d", a)
	}
	if !b.Hold(&a, 3*Step) || a != 3*Step {
		t.Fatalf("hold 3 steps: held %d", a)
	}
	if b.Hold(&c, 2*Step) {
		t.Fatal("2 more steps held in a budget with 1 left")
	}
	if c != 0 || b.Used() != 3*Step {
		t.Fatalf("after a refusal: held %d, used %d", c, b.Used())
	}
	if !b.Hold(&c, Step) {
		t.Fatal("the last step refused")
	}
	b.Give(a)
	b.Give(c)
	if b.Used() != 0 {
		t.Fatalf("used %d after every transfer gave back", b.Used())
	}
	var nb *Budget
	var h int64
	if !nb.Hold(&h, 1<<40) || nb.Used() != 0 {
		t.Fatal("a nil budget refused")
	}
}

// TestHoldConcurrent: under -race, transfers holding and giving at once
// never take more than the budget and leave nothing held.
func TestHoldConcurrent(t *testing.T) {
	b := New(64 * Step)
	var wg sync.WaitGroup
	var over sync.Once
	var total atomic.Int64 // what the transfers hold (Used counts refused attempts for a moment)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				var held int64
				for n := int64(1); n < int64(i%40)*Step; n += Step {
					before := held
					if !b.Hold(&held, n) {
						break
					}
					if sum := total.Add(held - before); sum > b.Max() {
						over.Do(func() { t.Errorf("transfers hold %d, over the budget %d", sum, b.Max()) })
					}
				}
				total.Add(-held)
				b.Give(held)
			}
		}()
	}
	wg.Wait()
	if b.Used() != 0 {
		t.Fatalf("used %d after every transfer ended", b.Used())
	}
}

// chunks gives its data a few bytes at a time and records the budget
// held at each read.
type chunks struct {
	data []byte
	b    *Budget
	max  int64 // the most the budget held at a read
	left int   // bytes not read
}

func (c *chunks) Read(p []byte) (int, error) {
	c.max = max(c.max, c.b.Used())
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 1000)], c.data)
	c.data = c.data[n:]
	c.left = len(c.data)
	return n, nil
}

func TestReadAll(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 300_000) // 3 MB
	b := New(16 << 20)

	// The size announced: one buffer of that size once the first MiB
	// has come, and no copy at the end.
	r := &chunks{data: body, b: b}
	got, release, err := b.ReadAll(r, 0, 10<<20, int64(len(body)), errBig)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("ReadAll: %d bytes, %v", len(got), err)
	}
	if cap(got) != len(body)+1 {
		t.Errorf("cap %d for a body of the size announced (%d): grew past it", cap(got), len(body))
	}
	if held := b.Used(); held < int64(len(body)) || held > int64(len(body))+2*Step+1<<20 {
		t.Errorf("held %d for a %d-byte body", held, len(body))
	}
	release()
	release() // a second release gives nothing back twice
	if b.Used() != 0 {
		t.Fatalf("used %d after release", b.Used())
	}

	// A client that announces much but sends little holds at most 1 MiB.
	r = &chunks{data: body[:5000], b: b}
	got, release, err = b.ReadAll(r, 0, 10<<20, 9<<20, errBig)
	if err != nil || len(got) != 5000 {
		t.Fatalf("short body: %d bytes, %v", len(got), err)
	}
	if r.max > 1<<20+Step {
		t.Errorf("held %d while 5000 bytes of an announced 9 MiB came", r.max)
	}
	release()

	// No size announced: doubling, and the right bytes.
	r = &chunks{data: body, b: b}
	got, release, err = b.ReadAll(r, 0, 10<<20, 0, errBig)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("no hint: %d bytes, %v", len(got), err)
	}
	release()

	// Over the limit: errTooBig, after reading to the end.
	r = &chunks{data: body, b: b}
	if _, release, err = b.ReadAll(r, 0, 1<<20, 0, errBig); err != errBig || r.left != 0 {
		t.Fatalf("over the limit: %v, %d bytes left unread", err, r.left)
	}
	release()
	// Exactly at the limit: accepted.
	if got, release, err = b.ReadAll(bytes.NewReader(body[:1<<20]), 0, 1<<20, 0, errBig); err != nil || len(got) != 1<<20 {
		t.Fatalf("at the limit: %d bytes, %v", len(got), err)
	}
	release()

	// Room before the data: left free, held, and not counted in limit.
	for _, hint := range []int64{0, int64(len(body))} {
		r = &chunks{data: body, b: b}
		got, release, err = b.ReadAll(r, 4096, int64(len(body)), hint, errBig)
		if err != nil || len(got) != 4096+len(body) || !bytes.Equal(got[4096:], body) {
			t.Fatalf("room, hint %d: %d bytes, %v", hint, len(got), err)
		}
		if !bytes.Equal(got[:4096], make([]byte, 4096)) {
			t.Errorf("room, hint %d: the room is not left free", hint)
		}
		if held := b.Used(); held < int64(len(got)) {
			t.Errorf("room, hint %d: held %d for a buffer of %d", hint, held, len(got))
		}
		release()
	}
	r = &chunks{data: body, b: b}
	if _, release, err = b.ReadAll(r, 4096, int64(len(body))-1, 0, errBig); err != errBig || r.left != 0 {
		t.Fatalf("room, one byte over the limit: %v, %d bytes left unread", err, r.left)
	}
	release()

	// Over the budget: ErrNoRoom, after reading to the end, nothing held.
	small := New(2 << 20)
	r = &chunks{data: body, b: small}
	if _, release, err = small.ReadAll(r, 0, 10<<20, 0, errBig); err != ErrNoRoom || r.left != 0 {
		t.Fatalf("over the budget: %v, %d bytes left unread", err, r.left)
	}
	if r.max > small.Max() {
		t.Errorf("held %d of a budget of %d", r.max, small.Max())
	}
	release()
	if small.Used() != 0 {
		t.Fatalf("used %d after a refused transfer", small.Used())
	}

	// A read error is returned as it is.
	boom := errors.New("connection reset")
	if _, release, err = b.ReadAll(io.MultiReader(strings.NewReader("abc"), errReader{boom}), 0, 100, 0, errBig); err != boom {
		t.Fatalf("read error: %v", err)
	}
	release()
	if b.Used() != 0 {
		t.Fatalf("used %d at the end", b.Used())
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestFor: a client's share is a quarter of the budget (or the least
// asked), counts against the budget too, is shared by the client's
// connections and goes when the last one is done.
func TestFor(t *testing.T) {
	b := New(64 * Step)
	a1, done1 := b.For("192.0.2.1", 0)
	a2, done2 := b.For("192.0.2.1", 0)
	if a1 != a2 || a1.Max() != 16*Step {
		t.Fatalf("shares %p %p of %d, want one of %d", a1, a2, a1.Max(), 16*Step)
	}
	var h1, h2 int64
	if !a1.Hold(&h1, 10*Step) || a2.Hold(&h2, 7*Step) || !a2.Hold(&h2, 6*Step) {
		t.Fatal("the client's share did not bound its two transfers together")
	}
	if b.Used() != 16*Step {
		t.Fatalf("budget used %d, want %d", b.Used(), 16*Step)
	}
	c, doneC := b.For("192.0.2.2", 40*Step)
	var hc int64
	if c.Max() != 40*Step || !c.Hold(&hc, 40*Step) {
		t.Fatalf("other client: share %d, want 40 steps held", c.Max())
	}
	var hd int64
	if d, _ := b.For("192.0.2.3", 0); d.Hold(&hd, 9*Step) {
		t.Fatal("held more than the whole budget has left")
	}
	a1.Give(h1)
	a2.Give(h2)
	c.Give(hc)
	if b.Used() != 0 || a1.Used() != 0 {
		t.Fatalf("left held: %d, %d", b.Used(), a1.Used())
	}
	done1()
	done1() // twice is once
	if a3, _ := b.For("192.0.2.1", 0); a3 != a1 {
		t.Fatal("share dropped while a connection still had it")
	}
	done2()
	doneC()
	if self, done := b.For("", 0); self != b {
		t.Fatal(`For("") is not the budget itself`)
	} else {
		done()
	}
	var nb *Budget
	if s, _ := nb.For("x", 0); s != nil {
		t.Fatal("nil budget gave a share")
	}
}
