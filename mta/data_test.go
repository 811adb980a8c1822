package mta

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestReadStrictData(t *testing.T) {
	cases := []struct {
		name, in, body string
		err            error
		rest           string // left in the reader after the end of data
	}{
		{"simple", "a\r\nb\r\n.\r\nNEXT", "a\r\nb\r\n", nil, "NEXT"},
		{"empty", ".\r\n", "", nil, ""},
		{"dot-stuffed", "..x\r\n..\r\n.\r\n", ".x\r\n.\r\n", nil, ""},
		{"bare LF", "a\nb\r\n.\r\n", "", errBadData, ""},
		{"bare CR", "a\rb\r\n.\r\n", "", errBadData, ""},
		{"NUL", "a\x00b\r\n.\r\n", "", errBadData, ""},
		{`\n.\n then real end`, "a\n.\nMAIL FROM:<x@y>\r\n.\r\nQUIT\r\n", "", errBadData, "QUIT\r\n"},
		{`\r\n.\r\r\n`, "a\r\n.\r\r\nMAIL\r\n.\r\n", "", errBadData, ""},
		{`\r\n.\rX`, "a\r\n.\rX\r\n.\r\n", "", errBadData, ""},
		{"too big", strings.Repeat("x", 30) + "\r\n.\r\n", "", errTooBig, ""},
		{"long line across buffer", strings.Repeat("y", 4095) + "\r\n.\r\n", strings.Repeat("y", 4095) + "\r\n", nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			max := int64(10000)
			if c.name == "too big" {
				max = 10
			}
			br := bufio.NewReaderSize(strings.NewReader(c.in), 4096)
			body, release, err := readStrictData(br, dataLimits{max: max})
			defer release()
			if !errors.Is(err, c.err) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if err == nil && string(body) != c.body {
				t.Errorf("body %q, want %q", body, c.body)
			}
			rest, _ := br.ReadString(0)
			if c.rest != "" && rest != c.rest {
				t.Errorf("left %q, want %q", rest, c.rest)
			}
		})
	}
}

func TestCheckLineEndings(t *testing.T) {
	for in, ok := range map[string]bool{
		"a\r\nb\r\n": true, "": true, "a": true,
		"a\n": false, "a\r": false, "\na": false, "a\rb\r\n": false, "a\x00\r\n": false,
	} {
		if got := checkLineEndings([]byte(in)) == nil; got != ok {
			t.Errorf("%q: ok=%v, want %v", in, got, ok)
		}
	}
}

func TestValidHelo(t *testing.T) {
	for h, ok := range map[string]bool{
		"mail.example.org": true, "localhost": true, "[192.0.2.1]": true, "[IPv6:2001:db8::1]": true,
		"": false, "a..b": false, "-x.org": false, "[1.2.3]": false, "exa mple": false, "x/y": false,
		"[IPv6:192.0.2.1]": false,
		// RFC 5321 section 4.1.3: any IPv6 form, Snum of up to 3 digits.
		"[IPv6:::ffff:127.0.0.1]": true, "[127.000.000.001]": true, "[IPv6:::1]": true, "[ipv6:::1]": true,
		"[256.1.1.1]": false, "[1.2.3.0004]": false, "[1.2.3.+4]": false, "[1.2.3.4.5]": false,
	} {
		if ValidHELO(h) != ok {
			t.Errorf("ValidHELO(%q) = %v", h, !ok)
		}
	}
}

// TestReadStrictDataPooled: the body comes after l.headroom bytes, the
// size limit counts the body only, and a buffer still in use is never
// handed to the next message: only release returns it to the pool.
func TestReadStrictDataPooled(t *testing.T) {
	read := func(in string, l dataLimits) ([]byte, func()) {
		t.Helper()
		buf, release, err := readStrictData(bufio.NewReader(strings.NewReader(in)), l)
		if err != nil {
			release()
			t.Fatalf("%q: %v", in, err)
		}
		return buf, release
	}
	// Exactly at the limit, with room for the trace fields before it.
	a, releaseA := read("0123456\r\n.\r\n", dataLimits{max: 9, headroom: traceRoom})
	if len(a) != traceRoom+9 || string(a[traceRoom:]) != "0123456\r\n" {
		t.Fatalf("buffer %d bytes, body %q", len(a), a[min(traceRoom, len(a)):])
	}
	held := string(a[traceRoom:])
	for i := range 50 {
		b, release := read(fmt.Sprintf("other %d\r\n.\r\n", i), dataLimits{max: 100, headroom: traceRoom})
		if &b[0] == &a[0] {
			t.Fatal("a buffer in use was handed out again")
		}
		release()
	}
	if string(a[traceRoom:]) != held {
		t.Fatalf("held body changed to %q", a[traceRoom:])
	}
	releaseA()
	if _, release, err := readStrictData(bufio.NewReader(strings.NewReader("0123456789\r\n.\r\n")), dataLimits{max: 11, headroom: traceRoom}); err != errTooBig {
		t.Errorf("12-byte body over an 11-byte limit: %v", err)
	} else {
		release()
	}
}

// FuzzReadStrictDataPaths: the whole-lines path gives what the line-by-line
// path gives (body or error, and where the reader is left), whatever the
// input, buffer size and read sizes.
func FuzzReadStrictDataPaths(f *testing.F) {
	for _, s := range []string{
		"a\r\n.\r\n", "a\r\nb\r\n..c\r\n.\r\nNEXT", "x\r\ny\r\rz\r\n.\r\n", "x\r\ny\nz\r\n.\r\n",
		"0123456789012345678901234567890\r\nab\r\n.\r\n", "a\x00b\r\nc\r\n.\r\n", "a\r\n\r\n.\r\n", "abc",
	} {
		f.Add([]byte(s), uint8(0), uint8(0))
	}
	f.Fuzz(func(t *testing.T, in []byte, bufSize, readSize uint8) {
		run := func(lineByLine bool) string {
			var r io.Reader = bytes.NewReader(in)
			if readSize > 0 {
				r = &chunkReader{r: r, n: int(readSize)}
			}
			br := bufio.NewReaderSize(r, 16+int(bufSize))
			l := dataLimits{max: 200, headroom: 3, lineByLine: lineByLine}
			body, release, err := readStrictData(br, l)
			defer release()
			rest, _ := io.ReadAll(br)
			if err != nil {
				return fmt.Sprintf("err %v rest %q", err, rest)
			}
			return fmt.Sprintf("body %q rest %q", body[3:], rest)
		}
		if fast, slow := run(false), run(true); fast != slow {
			t.Fatalf("whole lines: %s\nline by line: %s", fast, slow)
		}
	})
}

// chunkReader returns at most n bytes per Read.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

func FuzzReadStrictData(f *testing.F) {
	for _, s := range []string{"a\r\n.\r\n", "a\n.\n", "..\r\n.\r\n", "\r\n.\r\r\n", "x\x00\r\n.\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		body, release, err := readStrictData(bufio.NewReader(bytes.NewReader(in)), dataLimits{max: 1 << 20})
		defer release()
		if err == nil && checkLineEndings(body) != nil {
			t.Fatalf("accepted %q with bad line endings", body)
		}
	})
}

// BenchmarkReadStrictData: a 100 KiB body of 78-byte lines, through the
// whole-lines path and through the line-by-line path alone.
func BenchmarkReadStrictData(b *testing.B) {
	line := strings.Repeat("x", 76) + "\r\n"
	msg := []byte(strings.Repeat(line, 100*1024/len(line)) + ".\r\n")
	for _, lineByLine := range []bool{false, true} {
		b.Run(map[bool]string{false: "whole-lines", true: "line-by-line"}[lineByLine], func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			for i := 0; i < b.N; i++ {
				br := bufio.NewReaderSize(&chunkReader{r: bytes.NewReader(msg), n: 32 << 10}, 4096)
				_, release, err := readStrictData(br, dataLimits{max: 1 << 20, headroom: traceRoom, lineByLine: lineByLine})
				if err != nil {
					b.Fatal(err)
				}
				release()
			}
		})
	}
}
