package mailio

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// jobSink records what handleMbox hands on.
type jobSink struct {
	jobs    []job
	skipped []string
}

func (s *jobSink) create(string) error    { return nil }
func (s *jobSink) subscribe(string) error { return nil }
func (s *jobSink) add(j job) bool         { s.jobs = append(s.jobs, j); return true }
func (s *jobSink) skip(where string, err error) bool {
	s.skipped = append(s.skipped, where+": "+err.Error())
	return true
}

// readJobs reads an mbox as EncodeMboxFormat does, into a jobSink.
func readJobs(t *testing.T, mbox string, format MboxFormat) *jobSink {
	t.Helper()
	s := &jobSink{}
	if err := readMboxFormat(strings.NewReader(mbox), format, func(m mboxMessage) bool { return handleMbox(s, m, "INBOX") }); err != nil {
		t.Fatal(err)
	}
	return s
}

// clMessage writes a message as Dovecot does: the From line, the header
// with a Content-Length of the body, the empty line, the body unquoted,
// and the empty line before the next separator.
func clMessage(from, header, body string) string {
	return fmt.Sprintf("From %s\n%sContent-Length: %d\n\n%s\n", from, header, len(body), body)
}

const folderData = "From MAILER_DAEMON Thu Nov 26 09:00:00 2026\n" +
	"Date: Thu, 26 Nov 2026 09:00:00 +0000\n" +
	"From: Mail System Internal Data <MAILER-DAEMON@example.test>\n" +
	"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n" +
	"Message-ID: <1764147600@example.test>\n" +
	"X-IMAP: 1764147600 0000000003\n" +
	"Status: RO\n\n" +
	"This text is part of the internal format of your mail folder, and is not\n" +
	"a real message.  It is created automatically by the mail system software.\n" +
	"If deleted, important folder data will be lost, and it will be re-created\n" +
	"with the data reset to initial values.\n\n"

// TestReadMboxDovecot: an mbox as Dovecot writes it: the folder's
// pseudo-message first, bodies framed by Content-Length and not quoted
// (a "From " line after an empty line inside one), the state in Status:,
// X-Status:, X-Keywords: and X-UID:. Two messages come out, whole, with
// their flags, and without the mbox's fields.
func TestReadMboxDovecot(t *testing.T) {
	body1 := "Hello.\n\nFrom the desk of nobody: not a separator.\n>From stays as written.\n\n"
	body3 := "no final line break"
	mbox := folderData +
		clMessage("a@example.net Thu Nov 26 10:00:00 2026",
			"Subject: one\nStatus: RO\nX-Status: AF\nX-Keywords: $Label1 Work,Later \\Seen (bad)\n\t Folded\nX-UID: 1\n", body1) +
		clMessage("b@example.net Thu Nov 26 11:00:00 2026", "Subject: two\nStatus: O\nX-Status: TD\nX-UID: 2\n", "") +
		clMessage("c@example.net Thu Nov 26 12:00:00 2026", "Subject: three\nX-UID: 3\n", body3)
	s := readJobs(t, mbox, MboxRD)
	if len(s.skipped) != 0 || len(s.jobs) != 3 {
		t.Fatalf("%d messages, skipped %q; want 3, none skipped", len(s.jobs), s.skipped)
	}
	want := []struct {
		body  string
		flags []string
		where string
	}{
		{"Subject: one\r\n\r\n" + toCRLF(body1), []string{`\Seen`, `\Answered`, `\Flagged`, "$Label1", "Work", "Later", "Folded"}, "message 2 (line 14)"},
		{"Subject: two\r\n\r\n", []string{`\Draft`, `\Deleted`}, "message 3 (line 29)"},
		{"Subject: three\r\n\r\n" + body3 + "\r\n", nil, "message 4 (line 37)"},
	}
	for i, w := range want {
		j := s.jobs[i]
		if string(j.msg.Body) != w.body {
			t.Errorf("message %d = %q, want %q", i+1, j.msg.Body, w.body)
		}
		if !slices.Equal(j.msg.Flags, w.flags) {
			t.Errorf("message %d flags %q, want %q", i+1, j.msg.Flags, w.flags)
		}
		if j.where != w.where {
			t.Errorf("message %d is at %q, want %q", i+1, j.where, w.where)
		}
	}
}

func toCRLF(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// TestReadMboxContentLengthSeparators: a length holds when what follows is
// the end of the file or a line break and a "From " line, with at most
// one empty line between; CRLF line breaks count too.
func TestReadMboxContentLengthSeparators(t *testing.T) {
	const body = "a\n\nFrom inside\n"
	head := "From a Thu Nov 26 10:00:00 2026\nSubject: x\nContent-Length: 15\n\n" + body
	next := "From b Thu Nov 26 10:00:00 2026\nSubject: y\n\ny\n"
	for _, tc := range []struct {
		after string
		n     int
		holds bool
	}{
		{"", 1, true},
		{"\n", 1, true},
		{"\n\n", 1, true},
		{"\n" + next, 2, true},
		{"\r\n" + next, 2, true},
		{"\n\n" + next, 2, true},
		{"\r\n\r\n" + next, 2, true},
		{next, 2, false},            // no line break: cut at "From inside", not at "From b"
		{"\n\n\n" + next, 3, false}, // two empty lines
		{"more\n", 2, false},        // not a separator
	} {
		ms := cut(t, head+tc.after)
		if len(ms) != tc.n {
			t.Errorf("after %q: %d messages, want %d", tc.after, len(ms), tc.n)
			continue
		}
		whole := "Subject: x\r\nContent-Length: 15\r\n\r\n" + toCRLF(body)
		if holds := string(ms[0].body) == whole; holds != tc.holds {
			t.Errorf("after %q: %q, length held %v", tc.after, ms[0].body, holds)
		}
	}
}

// TestReadMboxWrongContentLength: a Content-Length that does not hold
// (too short, too long, past the end, not a number) is ignored: the
// message is cut at separators as without one, its quoted lines unquoted.
// A message framed by a length may follow one whose length did not hold.
func TestReadMboxWrongContentLength(t *testing.T) {
	for _, cl := range []string{"3", "40", "9999", "x12", "-1", "12 13"} {
		mbox := "From a Thu Nov 26 10:00:00 2026\nSubject: x\nContent-Length: " + cl + "\n\nbody\n>From quoted\n\n" +
			"From b Thu Nov 26 10:00:00 2026\nSubject: y\n\ny\n"
		ms := cut(t, mbox)
		if len(ms) != 2 {
			t.Errorf("Content-Length %s: %d messages", cl, len(ms))
			continue
		}
		if want := "Subject: x\r\nContent-Length: " + cl + "\r\n\r\nbody\r\nFrom quoted\r\n"; string(ms[0].body) != want {
			t.Errorf("Content-Length %s: %q, want %q", cl, ms[0].body, want)
		}
		if ms[1].line != 8 {
			t.Errorf("Content-Length %s: message 2 at line %d, want 8", cl, ms[1].line)
		}
	}
	// The first length runs into the second message (into its header,
	// into its body), whose own length holds: it is read again, from what
	// the first gave back.
	body2 := "two\n\nFrom inside two\n"
	for _, cl := range []int{40, 75} {
		mbox := fmt.Sprintf("From a Thu Nov 26 10:00:00 2026\nSubject: one\nContent-Length: %d\n\none\n\n", cl) +
			clMessage("b Thu Nov 26 10:00:00 2026", "Subject: two\n", body2) +
			"From c Thu Nov 26 10:00:00 2026\nSubject: three\n\nthree\n"
		var got []string
		for _, m := range cut(t, mbox) {
			got = append(got, fmt.Sprintf("%d:%q", m.line, m.body))
		}
		want := []string{
			fmt.Sprintf("1:%q", fmt.Sprintf("Subject: one\r\nContent-Length: %d\r\n\r\none\r\n", cl)),
			fmt.Sprintf("7:%q", fmt.Sprintf("Subject: two\r\nContent-Length: %d\r\n\r\n", len(body2))+toCRLF(body2)),
			`15:"Subject: three\r\n\r\nthree\r\n"`,
		}
		if !slices.Equal(got, want) {
			t.Errorf("Content-Length %d: got\n%s\nwant\n%s", cl, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// TestReadMboxFormats: mboxrd takes one '>' off every >+From line, mboxo
// off >From only; a Content-Length body is taken as written in both.
func TestReadMboxFormats(t *testing.T) {
	mbox := "From a Thu Nov 26 10:00:00 2026\nSubject: x\n\n>From one\n>>From two\n>>>From three\n>From\n> From\n"
	for format, want := range map[MboxFormat]string{
		MboxRD: "From one\r\n>From two\r\n>>From three\r\n>From\r\n> From\r\n",
		MboxO:  "From one\r\n>>From two\r\n>>>From three\r\n>From\r\n> From\r\n",
	} {
		var body string
		if err := readMboxFormat(strings.NewReader(mbox), format, func(m mboxMessage) bool {
			body = string(m.body)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if want = "Subject: x\r\n\r\n" + want; body != want {
			t.Errorf("%s: %q, want %q", format, body, want)
		}
	}
	framed := clMessage("a Thu Nov 26 10:00:00 2026", "Subject: x\n", ">From one\n>>From two\n")
	for _, format := range []MboxFormat{MboxRD, MboxO} {
		s := readJobs(t, framed, format)
		if len(s.jobs) != 1 || string(s.jobs[0].msg.Body) != "Subject: x\r\n\r\n>From one\r\n>>From two\r\n" {
			t.Errorf("%s, framed: %d messages %+v", format, len(s.jobs), s.jobs)
		}
	}
	for in, want := range map[string]MboxFormat{"mboxrd": MboxRD, "MBOXO": MboxO, "": MboxRD} {
		if f, err := ParseMboxFormat(in); err != nil || f != want {
			t.Errorf("ParseMboxFormat(%q) = %v, %v", in, f, err)
		}
	}
	if _, err := ParseMboxFormat("mmdf"); err == nil {
		t.Error("mmdf was taken")
	}
}

// TestFolderData: the pseudo-message is left out only as the first
// message. A real first message with X-IMAPbase (where the folder has no
// pseudo-message) is imported, without the field.
func TestFolderData(t *testing.T) {
	real := "From a Thu Nov 26 10:00:00 2026\nSubject: real\nX-IMAPbase: 1764147600 4 $Label1\nStatus: R\n\nbody\n\n"
	s := readJobs(t, real+folderData, MboxRD)
	if len(s.jobs) != 2 || len(s.skipped) != 0 {
		t.Fatalf("%d messages, skipped %q; want both", len(s.jobs), s.skipped)
	}
	if got := string(s.jobs[0].msg.Body); got != "Subject: real\r\n\r\nbody\r\n" || !slices.Equal(s.jobs[0].msg.Flags, []string{`\Seen`}) {
		t.Errorf("first message %q %q", got, s.jobs[0].msg.Flags)
	}
	base := strings.Replace(folderData, "X-IMAP:", "X-IMAPbase:", 1)
	if s := readJobs(t, base+real, MboxRD); len(s.jobs) != 1 || len(s.skipped) != 0 {
		t.Errorf("pseudo-message with X-IMAPbase: %d messages, skipped %q", len(s.jobs), s.skipped)
	}
}

// TestStripMboxFields: the fields are removed whatever their case, with
// their continuation lines and with white space before the colon; the
// header of an attached message keeps its own.
func TestStripMboxFields(t *testing.T) {
	in := "status: RO\r\nSubject: s\r\nX-Keywords: a\r\n b\r\nX-UID : 7\r\nContent-length: 4\r\nX-Status-Extra: kept\r\n\r\nStatus: body\r\n"
	want := "Subject: s\r\nX-Status-Extra: kept\r\n\r\nStatus: body\r\n"
	if got := string(stripMboxFields([]byte(in))); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	s := readJobs(t, "From a Thu Nov 26 10:00:00 2026\nStatus: RO\nX-UID: 3\n\nbody\n", MboxRD)
	if len(s.jobs) != 0 || len(s.skipped) != 1 || !strings.Contains(s.skipped[0], "no header") {
		t.Errorf("a message of mbox fields only: %d stored, skipped %q", len(s.jobs), s.skipped)
	}
}
