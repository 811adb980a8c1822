package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

func TestBlobReadAtSeek(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	body := testMessage("big", 3*ChunkSize+777)
	prefix := []byte("Return-Path: <bob@example.org>\r\n")
	out, err := s.Deliver(context.Background(), body, []Delivery{{Account: alice, Prefix: prefix}})
	if err != nil {
		t.Fatal(err)
	}
	msgs, _ := s.Messages(alice, "INBOX")
	whole := append(append([]byte(nil), prefix...), body...)
	b, err := s.OpenMessage(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if b.Size() != int64(len(whole)) || out[0].UID != msgs[0].UID {
		t.Fatalf("size %d want %d", b.Size(), len(whole))
	}
	// ReadAt across the prefix/blob edge and chunk boundaries.
	for _, c := range []struct{ off, n int }{
		{0, 10}, {len(prefix) - 5, 10}, {len(prefix) + ChunkSize - 3, 6},
		{len(prefix) + ChunkSize - 1, 2*ChunkSize + 2}, {len(whole) - 4, 4},
	} {
		p := make([]byte, c.n)
		n, err := b.ReadAt(p, int64(c.off))
		if err != nil || n != c.n || !bytes.Equal(p, whole[c.off:c.off+c.n]) {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", c.off, c.n, n, err)
		}
	}
	p := make([]byte, 10)
	if n, err := b.ReadAt(p, int64(len(whole)-3)); n != 3 || err != io.EOF {
		t.Fatalf("ReadAt past end = %d, %v", n, err)
	}
	if pos, err := b.Seek(-100, io.SeekEnd); err != nil || pos != int64(len(whole)-100) {
		t.Fatalf("Seek %d %v", pos, err)
	}
	rest, _ := io.ReadAll(b)
	if !bytes.Equal(rest, whole[len(whole)-100:]) {
		t.Fatal("read after seek")
	}
	b.Seek(int64(len(prefix)+ChunkSize), io.SeekStart)
	b.Seek(-1, io.SeekCurrent)
	one := make([]byte, 1)
	if _, err := b.Read(one); err != nil || one[0] != whole[len(prefix)+ChunkSize-1] {
		t.Fatal("read after SeekCurrent")
	}
	// Plain blob: body only.
	bb, _ := s.OpenBlob(msgs[0].BlobID)
	got, _ := io.ReadAll(bb)
	if !bytes.Equal(got, body) {
		t.Fatal("OpenBlob content")
	}
	// Expunged while readers have it open, the body stays readable until
	// the last of them closes, then it is freed.
	bb.Close()
	s.Expunge(alice, "INBOX", []uint32{msgs[0].UID})
	if _, err := s.OpenBlob(msgs[0].BlobID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenBlob of an expunged message's blob: %v", err)
	}
	b.Seek(0, io.SeekStart)
	if got, err := io.ReadAll(b); err != nil || !bytes.Equal(got, whole) {
		t.Fatalf("read after expunge: %d bytes, %v; want the whole message", len(got), err)
	}
	if _, err := s.BlobInfo(msgs[0].BlobID); err != nil {
		t.Fatalf("blob gone while a reader has it: %v", err)
	}
	b.Close()
	if _, err := s.BlobInfo(msgs[0].BlobID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("blob still there after its last reader closed: %v", err)
	}
	if infos, refs, chunks := blobCounts(t, s); infos != 0 || refs != 0 || chunks != 0 {
		t.Fatalf("%d infos %d refs %d chunks left", infos, refs, chunks)
	}
}

// TestBlobReadsDuringWrites: readers stream large bodies chunk by chunk
// while writers append; no read transaction is held between reads, so
// the writers (which grow the file) are never blocked by the readers.
func TestBlobReadsDuringWrites(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	body := testMessage("large", 10*ChunkSize+13)
	d := mustAppend(t, s, "INBOX", body)
	msgs, _ := s.Messages(alice, "INBOX")
	b, _ := s.OpenMessage(msgs[0])
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				mustAppend(t, s, "Archive", testMessage(fmt.Sprint(w, i), 2*ChunkSize))
			}
		}(w)
	}
	// A slow reader: one small read, then writers run, then the next.
	var got []byte
	p := make([]byte, 7001)
	for {
		n, err := b.Read(p)
		got = append(got, p[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if !bytes.Equal(got, body) || d.UID != 1 {
		t.Fatal("streamed body differs")
	}
}

// TestHeaders: Headers returns exactly the prefix and the header through
// the blank line, for messages with and without a prefix, a header longer
// than one chunk, a message without a body, and nil for an expunged one.
func TestHeaders(t *testing.T) {
	s, _ := openTest(t, Options{})
	ctx := context.Background()
	plain := testMessage("plain", 5000)
	long := append([]byte("X-Long: "+strings.Repeat("a", ChunkSize+100)+"\r\n"), testMessage("long", 3*ChunkSize)...)
	headerOnly := []byte("Subject: no body\r\nFrom: a@example.org\r\n")
	prefix := []byte("Return-Path: <b@example.org>\r\nDelivered-To: alice@example.test\r\n")

	mustAppend(t, s, "INBOX", plain)
	mustAppend(t, s, "INBOX", long)
	mustAppend(t, s, "INBOX", headerOnly)
	if _, err := s.Deliver(ctx, plain, []Delivery{{Account: alice, Prefix: prefix}}); err != nil {
		t.Fatal(err)
	}
	gone := mustAppend(t, s, "INBOX", testMessage("gone", 100))
	msgs, err := s.Messages(alice, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(alice, "INBOX", []uint32{gone.UID}); err != nil {
		t.Fatal(err)
	}
	hdrs, err := s.Headers(msgs)
	if err != nil {
		t.Fatal(err)
	}
	headerOf := func(b []byte) []byte {
		i := bytes.Index(b, []byte("\r\n\r\n"))
		if i < 0 {
			return b
		}
		return b[:i+4]
	}
	want := [][]byte{headerOf(plain), headerOf(long), headerOnly, append(append([]byte(nil), prefix...), headerOf(plain)...), nil}
	if len(hdrs) != len(want) {
		t.Fatalf("%d headers for %d messages", len(hdrs), len(want))
	}
	for i := range want {
		if !bytes.Equal(hdrs[i], want[i]) {
			t.Errorf("message %d: header %d bytes %.60q, want %d bytes %.60q", i, len(hdrs[i]), hdrs[i], len(want[i]), want[i])
		}
	}
	if len(hdrs[1]) <= ChunkSize {
		t.Fatalf("long header not longer than a chunk: %d", len(hdrs[1]))
	}
	// The headers of one call must not overlap: appending to one would
	// otherwise overwrite the next.
	hdrs[0] = append(hdrs[0], 'x')
	if !bytes.Equal(hdrs[1], want[1]) {
		t.Fatal("appending to one header changed the next")
	}
}

// TestDoomedBlobFreedAtOpen: a body still being read when the store
// closed (or crashed) after its last message was expunged is freed when
// the store next opens; the other messages' bodies stay.
func TestDoomedBlobFreedAtOpen(t *testing.T) {
	s, path := openTest(t, Options{})
	ctx := context.Background()
	for _, subj := range []string{"gone", "kept"} {
		if _, err := s.Append(ctx, alice, "INBOX", NewMessage{Body: testMessage(subj, 2*ChunkSize)}); err != nil {
			t.Fatal(err)
		}
	}
	msgs, _ := s.Messages(alice, "INBOX")
	b, err := s.OpenMessage(msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(alice, "INBOX", []uint32{msgs[0].UID}); err != nil {
		t.Fatal(err)
	}
	if infos, refs, _ := blobCounts(t, s); infos != 2 || refs != 1 {
		t.Fatalf("while read: %d infos %d refs, want the doomed blob kept with a count record", infos, refs)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b.Close() // too late: the store is closed
	st, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s2 := st.(*boltStore)
	keptChunks := (len(testMessage("kept", 2*ChunkSize)) + ChunkSize - 1) / ChunkSize
	if infos, refs, chunks := blobCounts(t, s2); infos != 1 || refs != 0 || chunks != keptChunks {
		t.Fatalf("after reopening: %d infos %d refs %d chunks, want only the kept message's", infos, refs, chunks)
	}
	kept, _ := s2.Messages(alice, "INBOX")
	r, err := s2.OpenMessage(kept[0])
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, _ := io.ReadAll(r); !bytes.Equal(got, testMessage("kept", 2*ChunkSize)) {
		t.Fatal("the kept message's body changed")
	}
}
