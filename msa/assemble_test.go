package msa

import (
	"bytes"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/membudget"
)

// HeadRoom is headRoom, for the external tests.
const HeadRoom = headRoom

// TestAssemble: the fields put on top of a submitted body go into the room
// left before it, so the message is not copied; when they do not fit, the
// copy is made with budget for it, or refused without.
func TestAssemble(t *testing.T) {
	body := []byte(strings.Repeat("From: <a@b.test>\r\n\r\n", 1) + strings.Repeat("x", 100<<10) + "\r\n")
	b := membudget.New(1 << 20)
	read := func() ([]byte, func()) {
		buf, release, err := b.ReadAll(bytes.NewReader(body), headRoom, 1<<20, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		return buf, release
	}
	head := []byte("DKIM-Signature: v=1\r\nReceived: by us\r\n")
	want := string(head) + string(body)

	buf, release := read()
	used := b.Used()
	msg, give, err := assemble(b, buf, head, [][]byte{buf[headRoom:]})
	if err != nil || string(msg) != want {
		t.Fatalf("in place: %v, %q...", err, msg[:min(len(msg), 60)])
	}
	if &msg[len(head)] != &buf[headRoom] {
		t.Error("the body was copied although the head fits in its room")
	}
	if b.Used() != used {
		t.Errorf("budget used %d, want %d: nothing more held", b.Used(), used)
	}
	give()
	release()

	// A head larger than the room: a copy, held while it is used.
	big := bytes.Repeat([]byte("X-Long: yes\r\n"), headRoom/10)
	buf, release = read()
	used = b.Used()
	msg, give, err = assemble(b, buf, big, [][]byte{buf[headRoom:], []byte("\r\n")})
	if err != nil || string(msg) != string(big)+string(body)+"\r\n" {
		t.Fatalf("copy: %v", err)
	}
	if b.Used() < used+int64(len(msg)) {
		t.Errorf("budget used %d for a copy of %d bytes besides %d", b.Used(), len(msg), used)
	}
	give()
	if b.Used() != used {
		t.Errorf("budget used %d after give, want %d", b.Used(), used)
	}

	// No budget left for the copy: ErrNoRoom, nothing held.
	small := membudget.New(int64(len(body)) / 2)
	if _, _, err := assemble(small, buf, big, [][]byte{buf[headRoom:]}); err != membudget.ErrNoRoom {
		t.Errorf("copy over the budget: %v, want ErrNoRoom", err)
	}
	if small.Used() != 0 {
		t.Errorf("refused copy holds %d", small.Used())
	}
	release()
}

// TestFoldLongLines: lines over 998 octets (without CRLF) are broken with
// CRLF SP into lines of at most 998; others, and parts without such a
// line, are left as they are.
func TestFoldLongLines(t *testing.T) {
	x := func(n int) string { return strings.Repeat("x", n) }
	for _, c := range []struct{ in, want string }{
		{"a\r\n" + x(998) + "\r\n", "a\r\n" + x(998) + "\r\n"},
		{x(999) + "\r\nb\r\n", x(998) + "\r\n x\r\nb\r\n"},
		{"S: " + x(2000) + "\r\n", "S: " + x(995) + "\r\n " + x(997) + "\r\n " + x(8) + "\r\n"},
		{x(1000), x(998) + "\r\n xx"}, // no line end
	} {
		var held int64
		got, err := foldLongLines([][]byte{[]byte(c.in)}, nil, &held)
		if err != nil {
			t.Fatal(err)
		}
		if string(got[0]) != c.want {
			t.Errorf("%d octets: got %q", len(c.in), got[0])
		}
		for _, l := range strings.Split(string(got[0]), "\r\n") {
			if len(l) > 998 {
				t.Errorf("a line of %d octets left", len(l))
			}
		}
	}
	in := [][]byte{[]byte("short\r\n"), []byte(x(1200) + "\r\n")}
	budget := membudget.New(1 << 20)
	var held int64
	out, err := foldLongLines(in, budget, &held)
	if err != nil || &out[0][0] != &in[0][0] || len(in[1]) != 1202 {
		t.Errorf("a part without a long line was copied, or the input changed (%v)", err)
	}
	if held < 1202 || budget.Used() != held {
		t.Errorf("the copy is not held against the budget: held %d, used %d", held, budget.Used())
	}
	budget.Give(held)
	// No room for the copy: ErrNoRoom (452 4.3.1), nothing more held.
	small := membudget.New(1024)
	held = 0
	if _, err := foldLongLines(in, small, &held); err != membudget.ErrNoRoom || held != 0 || small.Used() != 0 {
		t.Errorf("over the budget: %v, held %d, used %d", err, held, small.Used())
	}
}
