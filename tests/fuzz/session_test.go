package fuzz

import "testing"

// FuzzSMTPSession feeds raw bytes to the inbound MTA on port 25.
func FuzzSMTPSession(f *testing.F) {
	f.Add([]byte("EHLO a.test\r\nMAIL FROM:<s@peer.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n"))
	fs := startServer(f)
	f.Fuzz(func(t *testing.T, input []byte) { fs.session(t, "smtp", input) })
}

// FuzzSubmissionSession feeds raw bytes to the MSA on port 587, where
// plaintext AUTH is allowed so that inputs reach the authenticated state.
func FuzzSubmissionSession(f *testing.F) {
	f.Add([]byte("EHLO a.test\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABjb3JyZWN0IGhvcnNlIGJhdHRlcnkgc3RhcGxl\r\n" +
		"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@remote.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n"))
	fs := startServer(f)
	f.Fuzz(func(t *testing.T, input []byte) { fs.session(t, "submission", input) })
}

// FuzzIMAPSession feeds raw bytes to the IMAP server (plaintext LOGIN
// allowed).
func FuzzIMAPSession(f *testing.F) {
	f.Add([]byte("a LOGIN alice@example.test \"correct horse battery staple\"\r\nb SELECT INBOX\r\nc FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE)\r\nd LOGOUT\r\n"))
	fs := startServer(f)
	f.Fuzz(func(t *testing.T, input []byte) { fs.session(t, "imap", input) })
}

// Regression seeds found by fuzzing: BDAT chunks that the strict
// line-ending check refuses, which once made go-smtp's BDAT goroutine use a
// session that was already gone.
func FuzzSMTPBDAT(f *testing.F) {
	pre := "EHLO a.test\r\nMAIL FROM:<s@peer.test>\r\nRCPT TO:<alice@example.test>\r\n"
	f.Add([]byte(pre + "BDAT 3\r\n\rx\n"))
	f.Add([]byte(pre + "BDAT 2\r\n\rx"))
	f.Add([]byte(pre + "BDAT 4 LAST\r\na\nb\r\n"))
	f.Add([]byte(pre + "BDAT 3\r\nab\rBDAT 1 LAST\r\nx"))
	f.Add([]byte(pre + "BDAT 10\r\n\rx"))
	fs := startServer(f)
	f.Fuzz(func(t *testing.T, input []byte) { fs.session(t, "smtp", input) })
}

// TestBDATAbortKeepsServing: clients that drop the connection in the middle
// of BDAT chunks (the trigger of go-smtp's recovered panic) store nothing,
// and a normal client is served right after.
func TestBDATAbortKeepsServing(t *testing.T) {
	fs := startServer(t)
	pre := "EHLO a.test\r\nMAIL FROM:<s@peer.test>\r\nRCPT TO:<alice@example.test>\r\n"
	for i := 0; i < 50; i++ {
		fs.session(t, "smtp", []byte(pre+"BDAT 10\r\nabc"))
		fs.session(t, "smtp", []byte(pre+"BDAT 2\r\n\rx"))
	}
	st := fs.srv.Store
	before, err := st.Messages("alice@example.test", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	fs.session(t, "smtp", []byte(pre+"BDAT 22 LAST\r\nSubject: ok\r\n\r\nhello\r\nQUIT\r\n"))
	after, err := st.Messages("alice@example.test", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before)+1 {
		t.Fatalf("after aborted BDAT sessions a good one stored %d messages, want 1", len(after)-len(before))
	}
}
