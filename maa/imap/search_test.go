package imap

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"

	"github.com/posthorn/posthorn/store"
)

func TestSearch(t *testing.T) {
	e := newTestEnv(t)
	e.deliver(testAlice, "INBOX", testMessage(1, "Quarterly report"))
	e.deliver(testAlice, "INBOX", testMessage(2, "=?UTF-8?Q?R=C3=A9sum=C3=A9?="), `\Seen`)
	e.deliver(testAlice, "INBOX", testMessage(3, "lunch"), `\Flagged`, "$Junk")
	e.deliver(testAlice, "INBOX", "From: x@y.test\r\nX-Spam: yes\r\nSubject: big\r\n\r\n"+
		string(make([]byte, 40000))+"needle in the haystack\r\n")
	e.deliver(testAlice, "INBOX", string(loadCRLF(t, "testdata/nested.eml")))
	c := e.login(testAlice)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		c    imapv2.SearchCriteria
		want []imapv2.UID
	}{
		{"subject", imapv2.SearchCriteria{Header: []imapv2.SearchCriteriaHeaderField{{Key: "Subject", Value: "REPORT"}}}, []imapv2.UID{1}},
		{"subject-encoded", imapv2.SearchCriteria{Header: []imapv2.SearchCriteriaHeaderField{{Key: "Subject", Value: "résumé"}}}, []imapv2.UID{2}},
		{"from", imapv2.SearchCriteria{Header: []imapv2.SearchCriteriaHeaderField{{Key: "From", Value: "sender3@"}}}, []imapv2.UID{3}},
		{"header", imapv2.SearchCriteria{Header: []imapv2.SearchCriteriaHeaderField{{Key: "X-Spam", Value: ""}}}, []imapv2.UID{4}},
		{"body", imapv2.SearchCriteria{Body: []string{"NEEDLE"}}, []imapv2.UID{4}},
		{"text", imapv2.SearchCriteria{Text: []string{"sender2"}}, []imapv2.UID{2}},
		{"body-qp-decoded", imapv2.SearchCriteria{Body: []string{"été"}}, []imapv2.UID{5}},
		{"body-not-header", imapv2.SearchCriteria{Body: []string{"Quarterly"}}, nil},
		{"seen", imapv2.SearchCriteria{Flag: []imapv2.Flag{imapv2.FlagSeen}}, []imapv2.UID{2}},
		{"unseen", imapv2.SearchCriteria{NotFlag: []imapv2.Flag{imapv2.FlagSeen}}, []imapv2.UID{1, 3, 4, 5}},
		{"keyword", imapv2.SearchCriteria{Flag: []imapv2.Flag{"$Junk"}}, []imapv2.UID{3}},
		{"larger", imapv2.SearchCriteria{Larger: 10000}, []imapv2.UID{4}},
		{"not", imapv2.SearchCriteria{Not: []imapv2.SearchCriteria{{Larger: 10000}}}, []imapv2.UID{1, 2, 3, 5}},
		{"or", imapv2.SearchCriteria{Or: [][2]imapv2.SearchCriteria{{{Flag: []imapv2.Flag{imapv2.FlagSeen}},
			{Flag: []imapv2.Flag{imapv2.FlagFlagged}}}}}, []imapv2.UID{2, 3}},
		{"uid", imapv2.SearchCriteria{UID: []imapv2.UIDSet{{{Start: 2, Stop: 0}}}}, []imapv2.UID{2, 3, 4, 5}},
		{"seq", imapv2.SearchCriteria{SeqNum: []imapv2.SeqSet{imapv2.SeqSetNum(1, 4)}}, []imapv2.UID{1, 4}},
		{"sentbefore", imapv2.SearchCriteria{SentBefore: time.Date(2006, 1, 3, 0, 0, 0, 0, time.UTC)}, []imapv2.UID{1, 2, 3, 5}},
		// No Date field: the internal date stands in (RFC 5256 section 2.2).
		{"sentsince-no-date", imapv2.SearchCriteria{SentSince: time.Now().Add(-48 * time.Hour)}, []imapv2.UID{4}},
		{"since", imapv2.SearchCriteria{Since: time.Now().Add(-48 * time.Hour)}, []imapv2.UID{1, 2, 3, 4, 5}},
	}
	for _, tc := range cases {
		res, err := c.UIDSearch(&tc.c, nil).Wait()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := res.AllUIDs()
		if len(got) != len(tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
				break
			}
		}
	}
	res, err := c.Search(&imapv2.SearchCriteria{NotFlag: []imapv2.Flag{imapv2.FlagSeen}},
		&imapv2.SearchOptions{ReturnCount: true, ReturnMin: true, ReturnMax: true}).Wait()
	if err != nil || res.Count != 4 || res.Min != 1 || res.Max != 5 {
		t.Fatalf("ESEARCH: %v %+v", err, res)
	}

}

// TestSearchRes: SEARCH RETURN (SAVE), then $ as a set (RFC 5182, part of
// IMAP4rev2). imapclient does not send SAVE, so this speaks the protocol.
func TestSearchRes(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	e.deliver(testAlice, "INBOX", testMessage(1, "a"))
	e.deliver(testAlice, "INBOX", testMessage(2, "b"), "$Junk")
	conn, r, _ := e.dialPlain()
	fmt.Fprintf(conn, "a LOGIN %s \"%s\"\r\nb SELECT INBOX\r\n", testAlice, testPass)
	expectTagged(t, r, "a OK")
	expectTagged(t, r, "b OK")
	fmt.Fprintf(conn, "c UID SEARCH RETURN (SAVE) KEYWORD $Junk\r\nd FETCH $ (UID)\r\n")
	expectTagged(t, r, "c OK")
	line, err := r.ReadString('\n')
	if err != nil || line != "* 2 FETCH (UID 2)\r\n" {
		t.Fatalf("FETCH $: %q %v", line, err)
	}
	expectTagged(t, r, "d OK")
}

// TestSearchResMinMax: SAVE with MIN and/or MAX, and neither ALL nor
// COUNT, saves only the MIN and/or MAX message (RFC 5182 section 2.4);
// with ALL or COUNT too, every match.
func TestSearchResMinMax(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	for i := 1; i <= 6; i++ {
		e.deliver(testAlice, "INBOX", testMessage(i, "m"))
	}
	c := e.rawLogin(t, testAlice)
	c.send("s SELECT INBOX")
	c.expect("s OK")
	cases := []struct{ search, esearch, saved string }{
		{"SEARCH RETURN (MIN SAVE) 2:4", `* ESEARCH (TAG "a") MIN 2`, "2"},
		{"SEARCH RETURN (SAVE MAX) 2:4", `* ESEARCH (TAG "a") MAX 4`, "4"},
		{"UID SEARCH RETURN (MIN MAX SAVE) 2:4", `* ESEARCH (TAG "a") UID MIN 2 MAX 4`, "2,4"},
		{"SEARCH RETURN (MIN MAX SAVE) 3", `* ESEARCH (TAG "a") MIN 3 MAX 3`, "3"},
		{"SEARCH RETURN (MIN COUNT SAVE) 2:4", `* ESEARCH (TAG "a") MIN 2 COUNT 3`, "2,3,4"},
		{"SEARCH RETURN (MAX ALL SAVE) 2:4", `* ESEARCH (TAG "a") ALL 2:4 MAX 4`, "2,3,4"},
		{"SEARCH RETURN (MIN SAVE) 10:20", `* ESEARCH (TAG "a")`, ""},
	}
	for _, tc := range cases {
		c.send("a " + tc.search)
		lines := c.expect("a OK")
		if len(lines) != 2 || strings.TrimRight(lines[0], "\r\n") != tc.esearch {
			t.Errorf("%s: %q", tc.search, lines)
		}
		c.send("b UID FETCH $ (UID)")
		var got []string
		for _, l := range c.expect("b OK") {
			if _, rest, ok := strings.Cut(l, "FETCH (UID "); ok {
				got = append(got, strings.TrimSuffix(rest, ")\r\n"))
			}
		}
		if s := strings.Join(got, ","); s != tc.saved {
			t.Errorf("%s: $ is %q, want %q", tc.search, s, tc.saved)
		}
	}
}

// TestSearchResFailed: a SEARCH with SAVE that fails leaves $ empty (RFC
// 5182 section 2.1), here one that finds the selected mailbox deleted
// (its delete event not arrived yet).
func TestSearchResFailed(t *testing.T) {
	e := newTestEnv(t, func(s *Server) {
		s.AllowPlaintextAuth = true
		s.Store = dropEvents{s.Store, store.EventMailboxDelete}
	})
	if _, err := e.st.CreateMailbox(testAlice, "cf", ""); err != nil {
		t.Fatal(err)
	}
	e.deliver(testAlice, "cf", testMessage(1, "one"))
	e.deliver(testAlice, "cf", testMessage(2, "two"))
	c := e.rawLogin(t, testAlice)
	c.send("s SELECT cf")
	c.expect("s OK")
	c.send("a SEARCH RETURN (SAVE ALL) 1:2")
	c.expect("a OK")
	c.send("b FETCH $ (UID)")
	if lines := c.expect("b OK"); len(lines) != 3 {
		t.Fatalf("FETCH $: %q", lines)
	}
	if err := e.st.DeleteMailbox(testAlice, "cf"); err != nil {
		t.Fatal(err)
	}
	c.send("a SEARCH RETURN (SAVE) BODY two")
	c.expect("a NO ")
	c.send("b FETCH $ (UID)")
	if lines := c.expect("b OK"); len(lines) != 1 {
		t.Fatalf("FETCH $ after a failed SAVE: %q", lines)
	}
}

// TestSearchBodyCharsets: BODY and TEXT find the text of a part whatever
// its transfer encoding and charset (RFC 9051 6.4.4): a KOI8-R part in
// 8bit, an ISO-2022-JP part in base64, a UTF-8 part in base64. The
// SEARCH string is UTF-8.
func TestSearchBodyCharsets(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	mime := func(subject, params, enc, body string) string {
		return "From: a@example.org\r\nSubject: " + subject + "\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: text/plain; " + params + "\r\nContent-Transfer-Encoding: " + enc + "\r\n\r\n" + body + "\r\n"
	}
	e.deliver(testAlice, "INBOX", mime("koi8", "charset=koi8-r", "8bit", "\xf0\xd2\xc9\xd7\xc5\xd4 \xcd\xc9\xd2"))
	e.deliver(testAlice, "INBOX", mime("jis", "charset=iso-2022-jp", "base64", "GyRCRnxLXDhsJE4lRiUtJTklSBsoQg=="))
	e.deliver(testAlice, "INBOX", mime("utf8", "charset=utf-8", "base64", "Z3LDvMOfZSBhdXMga8O2bG4="))
	// Words of the header in RFC 2047 encoded words, UTF-8 and ISO-8859-2.
	e.deliver(testAlice, "INBOX", "From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <j@example.org>\r\n"+
		"Subject: =?UTF-8?B?w4RwZmVsIHVuZCBCaXJuZW4=?=\r\nX-Note: =?ISO-8859-2?Q?=B3=F3d=BC?=\r\n\r\nplain body\r\n")
	c := e.rawLogin(t, testAlice)
	c.send("s SELECT INBOX")
	c.expect("s OK")
	for _, tc := range []struct{ key, text, want string }{
		{"BODY", "мир", "* SEARCH 1"},
		{"TEXT", "Привет", "* SEARCH 1"},
		{"BODY", "テキスト", "* SEARCH 2"},
		{"BODY", "köln", "* SEARCH 3"},
		{"BODY", "nowhere", "* SEARCH"},
		// TEXT matches the header's encoded words decoded (RFC 9051
		// 6.4.4), as SUBJECT and FROM do; BODY does not look there.
		{"TEXT", "Äpfel", "* SEARCH 4"},
		{"TEXT", "jürgen müller", "* SEARCH 4"},
		{"TEXT", "łódź", "* SEARCH 4"},
		{"TEXT", "plain body", "* SEARCH 4"},
		{"BODY", "Äpfel", "* SEARCH"},
	} {
		c.send("t SEARCH CHARSET UTF-8 %s {%d+}\r\n%s", tc.key, len(tc.text), tc.text)
		lines := c.expect("t OK")
		if got := strings.TrimRight(lines[0], "\r\n"); got != tc.want {
			t.Errorf("SEARCH %s %q: %q, want %q", tc.key, tc.text, got, tc.want)
		}
	}
}

// TestSearchResSaveAlone: RETURN (SAVE) alone sends no ESEARCH response
// (RFC 5182 section 2.1), though it saves every match; with another
// option, the ESEARCH comes as before.
func TestSearchResSaveAlone(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	for i := 1; i <= 3; i++ {
		e.deliver(testAlice, "INBOX", testMessage(i, "m"))
	}
	c := e.rawLogin(t, testAlice)
	c.send("s SELECT INBOX")
	c.expect("s OK")
	for _, cmd := range []string{"SEARCH RETURN (SAVE) 2:3", "uid search return (save) 2:3"} {
		c.send("a " + cmd)
		if lines := c.expect("a OK"); len(lines) != 1 {
			t.Errorf("%s: %q, want the tagged OK alone", cmd, lines)
		}
		c.send("b FETCH $ (UID)")
		if lines := c.expect("b OK"); len(lines) != 3 {
			t.Errorf("%s: FETCH $: %q, want messages 2 and 3", cmd, lines)
		}
	}
	c.send("a SEARCH RETURN (SAVE COUNT) 2:3")
	if lines := c.expect("a OK"); len(lines) != 2 || !strings.HasPrefix(lines[0], `* ESEARCH (TAG "a") COUNT 2`) {
		t.Errorf("SAVE COUNT: %q", lines)
	}
}

// TestSearchBodyIsText: BODY looks in the text a reader sees (RFC 9051
// section 6.4.4), as Dovecot does: the decoded content of text parts and
// the header of an attached message, not the MIME headers, boundaries,
// preamble, the quoted-printable or base64 source, or an attachment that
// is not text (probe 8: "charset", "filename", a file name or "=3D" found
// every multipart message, and a short word most base64). TEXT finds the
// MIME headers too.
func TestSearchBodyIsText(t *testing.T) {
	e := newTestEnv(t)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	e.deliver(testAlice, "INBOX", "From: a@example.test\r\nSubject: mixed\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=\"XYZBOUND\"\r\n\r\n"+
		"preamble-marker\r\n--XYZBOUND\r\n"+
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"+
		"caf=C3=A9 qpmarker=3Dvalue\r\n--XYZBOUND\r\n"+
		"Content-Type: application/octet-stream; name=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"+
		b64("secret-attachment-word")+"\r\n--XYZBOUND\r\n"+
		"Content-Type: message/rfc822\r\n\r\n"+
		"Subject: innermarker\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n\r\n"+
		b64("inner decoded w\xf6rd")+"\r\n--XYZBOUND--\r\nepilogue-marker\r\n")
	e.deliver(testAlice, "INBOX", "From: b@example.test\r\nSubject: plain\r\n\r\nnothing to see\r\n")
	c := e.login(testAlice)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key, s string
		want   int // UIDs found: 1, or 0 for none
	}{
		{"BODY", "café", 1},
		{"BODY", "qpmarker=value", 1},
		{"BODY", "innermarker", 1},
		{"BODY", "inner decoded wörd", 1},
		{"BODY", "nothing", 0}, // the other message, not this one: see below
		{"BODY", "caf=C3", 0},
		{"BODY", "=3D", 0},
		{"BODY", "XYZBOUND", 0},
		{"BODY", "preamble-marker", 0},
		{"BODY", "epilogue-marker", 0},
		{"BODY", "octet-stream", 0},
		{"BODY", "report.pdf", 0},
		{"BODY", "secret-attachment-word", 0},
		{"BODY", b64("secret-attachment-word")[:8], 0},
		{"TEXT", "report.pdf", 1},
		{"TEXT", "mixed", 1},
		{"TEXT", "café", 1},
	} {
		crit := imapv2.SearchCriteria{Body: []string{tc.s}}
		if tc.key == "TEXT" {
			crit = imapv2.SearchCriteria{Text: []string{tc.s}}
		}
		crit.UID = []imapv2.UIDSet{{{Start: 1, Stop: 1}}}
		res, err := c.UIDSearch(&crit, nil).Wait()
		if err != nil {
			t.Fatalf("%s %q: %v", tc.key, tc.s, err)
		}
		if got := len(res.AllUIDs()); got != tc.want {
			t.Errorf("%s %q found %d of message 1, want %d", tc.key, tc.s, got, tc.want)
		}
	}
	res, err := c.UIDSearch(&imapv2.SearchCriteria{Body: []string{"nothing to see"}}, nil).Wait()
	if err != nil || len(res.AllUIDs()) != 1 || res.AllUIDs()[0] != 2 {
		t.Errorf("BODY of a plain message: %v %v", res.AllUIDs(), err)
	}
}
