package control

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestFramesRoundTrip: what goes through a frameWriter comes out of a
// frameReader whole, whatever the sizes of the writes, and the reader
// stops at the end frame, leaving what follows (the answer) unread.
func TestFramesRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, 4095, 64 << 10, 64<<10 + 1, 300 << 10} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rand.IntN(256))
		}
		var wire bytes.Buffer
		w := newFrameWriter(&wire)
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1+rand.IntN(100<<10))
			if _, err := w.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		wire.WriteString("{\"Output\":\"after\"}\n")
		br := bufio.NewReader(&wire)
		got, err := io.ReadAll(&frameReader{r: br})
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: got %d bytes, %v", size, len(got), err)
		}
		if rest, _ := io.ReadAll(br); string(rest) != "{\"Output\":\"after\"}\n" {
			t.Errorf("size %d: after the data %q", size, rest)
		}
	}
}

// TestFramesBadInput: a stream cut off, or a frame larger than any
// writer makes, is an error, not a hang or a huge allocation.
func TestFramesBadInput(t *testing.T) {
	for name, wire := range map[string]string{
		"cut in a header": "\x00\x00",
		"cut in a frame":  "\x00\x00\x00\x10abc",
		"no end frame":    "\x00\x00\x00\x03abc",
		"huge frame":      "\xff\xff\xff\xff",
	} {
		_, err := io.ReadAll(&frameReader{r: bufio.NewReader(strings.NewReader(wire))})
		if err == nil {
			t.Errorf("%s: no error", name)
		} else if name != "huge frame" && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
