package msa

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/mta"
)

// brokenStore fails every lookup, as a store with a disk error would.
type brokenStore struct{ fakeStore }

func (brokenStore) HasDomain(string) (bool, error) { return false, errors.New("disk on fire") }

// TestInternalErrorIs451WithID: an internal failure in DATA is a
// temporary 451 4.3.0 with an id that is in the log, not go-smtp's 554 and
// not the error text.
func TestInternalErrorIs451WithID(t *testing.T) {
	var logBuf bytes.Buffer
	srv := &Server{
		Hostname: "mail.ours.test", AllowPlaintextAuth: true, Auth: fakeAuth{},
		Store: brokenStore{}, MDA: fakeDelivery{}, Queue: fakeDelivery{},
		Logger: slog.New(slog.NewTextHandler(&syncWriter{w: &logBuf}, nil)),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	c, err := smtp.Dial(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "u@ours.test", "p")); err != nil {
		t.Fatal(err)
	}
	err = c.SendMail("u@ours.test", []string{"x@remote.test"}, strings.NewReader("From: <u@ours.test>\r\n\r\nhi\r\n"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 0}) {
		t.Fatalf("internal error: %v, want 451 4.3.0", err)
	}
	if strings.Contains(se.Message, "disk on fire") {
		t.Fatalf("reply leaks the error: %q", se.Message)
	}
	id := se.Message[strings.Index(se.Message, "(id ")+4 : strings.LastIndex(se.Message, ")")]
	if !strings.Contains(logBuf.String(), "error_id="+id) || !strings.Contains(logBuf.String(), "disk on fire") {
		t.Fatalf("id %s and error not in the log:\n%s", id, logBuf.String())
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestDropBcc: Bcc: and Resent-Bcc: fields go, with their continuation
// lines, wherever they are in the header and however it is split; the
// body and the other fields stay byte for byte.
func TestDropBcc(t *testing.T) {
	join := func(parts [][]byte) string { return string(bytes.Join(parts, nil)) }
	for _, c := range []struct{ in, want string }{
		{"From: a\r\nBcc: b\r\nTo: c\r\n\r\nBcc: body\r\n", "From: a\r\nTo: c\r\n\r\nBcc: body\r\n"},
		{"Bcc: b,\r\n c\r\nFrom: a\r\n\r\nx", "From: a\r\n\r\nx"},
		{"From: a\r\nRESENT-BCC: b\r\n\r\n", "From: a\r\n\r\n"},
		{"From: a\r\nbcc:\r\n\r\n", "From: a\r\n\r\n"},
		{"From: a\r\nX-Bcc: b\r\n\r\n", "From: a\r\nX-Bcc: b\r\n\r\n"},
		{"\r\nBcc: b\r\n", "\r\nBcc: b\r\n"},
		{"From: a\r\nBcc: b", "From: a\r\n\r\n"}, // no empty line: EndHeader's parts
	} {
		parts := [][]byte{[]byte(c.in)}
		if p := mta.EndHeader(parts[0]); p != nil {
			parts = p
		}
		if got := join(dropBcc(parts)); got != c.want {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
}
