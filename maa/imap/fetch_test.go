package imap

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/posthorn/posthorn/store"
)

func TestAppendFetch(t *testing.T) {
	e := newTestEnv(t)
	c := e.login(testAlice)
	msg := loadCRLF(t, "testdata/nested.eml")
	when := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	cmd := c.Append("INBOX", int64(len(msg)), &imapv2.AppendOptions{Flags: []imapv2.Flag{imapv2.FlagDraft, "$Label1"}, Time: when})
	cmd.Write(msg)
	cmd.Close()
	ad, err := cmd.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if ad.UID != 1 || ad.UIDValidity == 0 {
		t.Fatalf("APPENDUID: %+v", ad)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sections := []*imapv2.FetchItemBodySection{
		{Peek: true},
		{Peek: true, Specifier: imapv2.PartSpecifierHeader, HeaderFields: []string{"Subject", "From"}},
		{Peek: true, Part: []int{2, 2}},
		{Peek: true, Part: []int{3}, Specifier: imapv2.PartSpecifierText},
		{Peek: true, Part: []int{1}, Partial: &imapv2.SectionPartial{Offset: 0, Size: 5}},
	}
	msgs, err := c.Fetch(imapv2.UIDSetNum(ad.UID), &imapv2.FetchOptions{
		UID: true, Flags: true, RFC822Size: true, InternalDate: true, Envelope: true,
		BodyStructure: &imapv2.FetchItemBodyStructure{Extended: true}, BodySection: sections,
		BinarySection: []*imapv2.FetchItemBinarySection{{Part: []int{4}, Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if m.RFC822Size != int64(len(msg)) || !m.InternalDate.Equal(when) || m.Envelope.Subject != "nested" {
		t.Fatalf("size %d/%d date %v env %+v", m.RFC822Size, len(msg), m.InternalDate, m.Envelope)
	}
	if !hasImapFlag(m.Flags, imapv2.FlagDraft) || !hasImapFlag(m.Flags, "$Label1") || hasImapFlag(m.Flags, imapv2.FlagSeen) {
		t.Fatalf("flags %v", m.Flags)
	}
	mp, ok := m.BodyStructure.(*imapv2.BodyStructureMultiPart)
	if !ok || len(mp.Children) != 4 || mp.Subtype != "mixed" {
		t.Fatalf("BODYSTRUCTURE %#v", m.BodyStructure)
	}
	for _, s := range sections {
		want := imapserver.ExtractBodySection(bytes.NewReader(msg), s)
		got := m.FindBodySection(s)
		if s.Specifier == imapv2.PartSpecifierHeader {
			got, want = []byte(normHeader(got)), []byte(normHeader(want))
		}
		if !bytes.Equal(got, want) {
			t.Errorf("section %+v:\ngot  %q\nwant %q", s, got, want)
		}
	}
	if len(m.BinarySection) != 1 || !bytes.HasPrefix(m.BinarySection[0].Bytes, []byte("%PDF-1.4")) {
		t.Errorf("BINARY[4]: %+v", m.BinarySection)
	}

	// BODY[] without PEEK sets \Seen and reports it (RFC 9051 6.4.5).
	msgs, err = c.Fetch(imapv2.SeqSetNum(1), &imapv2.FetchOptions{
		BodySection: []*imapv2.FetchItemBodySection{{Specifier: imapv2.PartSpecifierText}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if !hasImapFlag(msgs[0].Flags, imapv2.FlagSeen) {
		t.Fatalf("\\Seen not reported: %v", msgs[0].Flags)
	}
	stored, _ := e.st.Messages(testAlice, "INBOX")
	if !hasFlag(stored[0].Flags, `\Seen`) {
		t.Fatalf("\\Seen not stored: %v", stored[0].Flags)
	}
}

func hasImapFlag(fs []imapv2.Flag, f imapv2.Flag) bool {
	for _, x := range fs {
		if strings.EqualFold(string(x), string(f)) {
			return true
		}
	}
	return false
}

func TestStoreCopyMoveExpunge(t *testing.T) {
	e := newTestEnv(t)
	for i := 1; i <= 5; i++ {
		e.deliver(testAlice, "INBOX", testMessage(i, "msg"))
	}
	c := e.login(testAlice)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	res, err := c.Store(imapv2.SeqSetNum(2, 4), &imapv2.StoreFlags{Op: imapv2.StoreFlagsAdd,
		Flags: []imapv2.Flag{imapv2.FlagDeleted, imapv2.FlagJunk}}, nil).Collect()
	if err != nil || len(res) != 2 || !hasImapFlag(res[0].Flags, imapv2.FlagJunk) {
		t.Fatalf("STORE: %v %+v", err, res)
	}
	res, err = c.Store(imapv2.SeqSetNum(4), &imapv2.StoreFlags{Op: imapv2.StoreFlagsDel, Silent: true,
		Flags: []imapv2.Flag{imapv2.FlagJunk}}, nil).Collect()
	if err != nil || len(res) != 0 {
		t.Fatalf("STORE.SILENT: %v %+v", err, res)
	}
	cd, err := c.Copy(imapv2.SeqSetNum(1, 2), "Archive").Wait()
	if err != nil || cd.UIDValidity == 0 || cd.DestUIDs.String() != "1:2" || cd.SourceUIDs.String() != "1:2" {
		t.Fatalf("COPY: %v %+v", err, cd)
	}
	if _, err := c.Copy(imapv2.SeqSetNum(1), "Nope").Wait(); imapCode(err) != imapv2.ResponseCodeTryCreate {
		t.Fatalf("COPY to missing: %v", err)
	}
	// Thunderbird's delete: MOVE to Trash.
	md, err := c.Move(imapv2.UIDSetNum(5), "Trash").Wait()
	if err != nil || md.DestUIDs.String() != "1" {
		t.Fatalf("MOVE: %v %+v", err, md)
	}
	exp, err := c.Expunge().Collect()
	if err != nil {
		t.Fatal(err)
	}
	// 2 and 4 were \Deleted; sequence numbers as the client sees them.
	if len(exp) != 2 || exp[0]+exp[1] != 2+4-1 && exp[0]+exp[1] != 6 {
		t.Fatalf("EXPUNGE: %v", exp)
	}
	left, _ := e.st.Messages(testAlice, "INBOX")
	if len(left) != 2 || left[0].UID != 1 || left[1].UID != 3 {
		t.Fatalf("left: %+v", left)
	}
	msgs, err := c.Fetch(imapv2.SeqSetNum(1, 2), &imapv2.FetchOptions{UID: true}).Collect()
	if err != nil || len(msgs) != 2 || msgs[1].UID != 3 {
		t.Fatalf("after EXPUNGE: %v %+v", err, msgs)
	}
	// EXAMINE is read-only.
	if _, err := c.Select("INBOX", &imapv2.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Store(imapv2.SeqSetNum(1), &imapv2.StoreFlags{Op: imapv2.StoreFlagsAdd,
		Flags: []imapv2.Flag{imapv2.FlagSeen}}, nil).Collect(); err == nil {
		t.Fatal("STORE in EXAMINE succeeded")
	}
}

// TestHeaderOnlyFetch: a FETCH asking only for header sections (a header
// sync) is served from Store.Headers without opening bodies; its bytes
// must match what the whole message says, with a per-recipient prefix,
// with a header longer than a store chunk, and over many batches.
func TestHeaderOnlyFetch(t *testing.T) {
	e := newTestEnv(t)
	var want [][]byte
	prefix := []byte("Return-Path: <sender@example.org>\r\nDelivered-To: alice@example.test\r\n")
	for i := 1; i <= infoBatch+10; i++ {
		body := []byte(testMessage(i, "subject "+itoa(i)))
		switch i {
		case 3:
			body = append([]byte("X-Long: "+strings.Repeat("x", store.ChunkSize+50)+"\r\n"), body...)
		case 5:
			body = []byte("Subject: header only\r\nFrom: a@example.org\r\n")
		}
		var pre []byte
		if i%2 == 0 {
			pre = prefix
		}
		if _, err := e.st.Deliver(context.Background(), body, []store.Delivery{{Account: testAlice, Prefix: pre}}); err != nil {
			t.Fatal(err)
		}
		want = append(want, append(append([]byte(nil), pre...), body...))
	}
	c := e.login(testAlice)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	header := func(b []byte) []byte {
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			return b[:i+4]
		}
		return b
	}
	msgs, err := c.Fetch(imapv2.SeqSet{{Start: 1, Stop: 0}}, &imapv2.FetchOptions{UID: true, RFC822Size: true,
		BodySection: []*imapv2.FetchItemBodySection{
			{Peek: true, Specifier: imapv2.PartSpecifierHeader},
			{Peek: true, Specifier: imapv2.PartSpecifierHeader, HeaderFields: []string{"Subject", "Delivered-To"}},
			{Peek: true, Specifier: imapv2.PartSpecifierHeader, HeaderFieldsNot: []string{"Subject", "X-Long"}},
			{Peek: true, Specifier: imapv2.PartSpecifierHeader, Partial: &imapv2.SectionPartial{Offset: 2, Size: 7}},
		}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(want) {
		t.Fatalf("%d messages, want %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		w := want[i]
		h := header(w)
		if m.RFC822Size != int64(len(w)) {
			t.Errorf("message %d: size %d, want %d", i+1, m.RFC822Size, len(w))
		}
		if got := m.BodySection[0].Bytes; !bytes.Equal(got, h) {
			t.Errorf("message %d: HEADER %d bytes, want %d: %.80q", i+1, len(got), len(h), got)
		}
		fields := string(m.BodySection[1].Bytes)
		if !strings.Contains(fields, "Subject: ") || strings.Contains(fields, "From:") ||
			strings.Contains(fields, "Delivered-To:") != bytes.HasPrefix(w, prefix) {
			t.Errorf("message %d: HEADER.FIELDS %q", i+1, fields)
		}
		not := string(m.BodySection[2].Bytes)
		if strings.Contains(not, "Subject:") || strings.Contains(not, "X-Long:") || !strings.Contains(not, "From: ") {
			t.Errorf("message %d: HEADER.FIELDS.NOT %.80q", i+1, not)
		}
		if got := string(m.BodySection[3].Bytes); got != string(h[2:9]) {
			t.Errorf("message %d: HEADER<2.7> %q, want %q", i+1, got, h[2:9])
		}
	}
}

// TestMessageGlobalRev1: a message/global part (RFC 6532) is described
// with its envelope and body only to a client that enabled IMAP4rev2;
// to an IMAP4rev1 client it is a basic body (RFC 3501 section 9 has no
// GLOBAL in media-message).
func TestMessageGlobalRev1(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	e.deliver(testAlice, "INBOX", "From: a@example.org\r\nSubject: outer\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"+
		"--b\r\nContent-Type: message/global\r\n\r\nFrom: c@example.org\r\nSubject: inner\r\n\r\nbody\r\n--b--\r\n")
	c := e.rawLogin(t, testAlice)
	c.send("s SELECT INBOX")
	c.expect("s OK")
	fetch := func() string {
		c.send("f FETCH 1 (BODY BODYSTRUCTURE)")
		return strings.Join(c.expect("f OK"), "")
	}
	if got := fetch(); strings.Contains(got, `"inner"`) || strings.Count(got, `("message" "global" NIL NIL NIL "7bit" 43 NIL`) != 1 ||
		strings.Count(got, `("message" "global" NIL NIL NIL "7bit" 43)`) != 1 {
		t.Errorf("IMAP4rev1: message/global not a basic body:\n%s", got)
	}
	c.send("e ENABLE IMAP4rev2")
	c.expect("e OK")
	if got := fetch(); strings.Count(got, `"inner"`) != 2 {
		t.Errorf("IMAP4rev2: message/global without its envelope:\n%s", got)
	}
}
