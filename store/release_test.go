package store

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
)

// rssFileKiB is this process's resident file-backed memory.
func rssFileKiB(t *testing.T) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "RssFile:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

// TestReleaseMapped: after reading 24 MiB of bodies the mapped pages are
// resident; ReleaseMapped gives them back and every byte still reads the
// same afterwards.
func TestReleaseMapped(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	var bodies [][]byte
	for i := 0; i < 96; i++ {
		b := testMessage("m"+strconv.Itoa(i), 256<<10)
		bodies = append(bodies, b)
		mustAppend(t, s, "INBOX", b)
	}
	readAll := func() {
		msgs, err := s.Messages(alice, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range msgs {
			blob, err := s.OpenMessage(m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(blob)
			if err != nil || !bytes.Equal(got, bodies[i]) {
				t.Fatalf("message %d: %d bytes, %v", i, len(got), err)
			}
		}
	}
	readAll()
	before := rssFileKiB(t)
	if err := s.ReleaseMapped(); err != nil {
		t.Fatal(err)
	}
	after := rssFileKiB(t)
	t.Logf("resident file memory %d KiB -> %d KiB", before, after)
	if before-after < 16<<10 {
		t.Fatalf("resident file memory %d KiB -> %d KiB: less than 16 MiB released", before, after)
	}
	readAll()
	// Writes after a release land and read back too.
	extra := testMessage("after", 1<<20)
	bodies = append(bodies, extra)
	mustAppend(t, s, "INBOX", extra)
	readAll()
}
