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
