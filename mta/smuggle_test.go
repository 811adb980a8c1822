package mta

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
)

// SmugglingForms are the end-of-data look-alikes of SMTP smuggling
// (SEC Consult, 2023): a receiver that takes any of them as the end of
// the data would see the bytes after it as new commands.
var SmugglingForms = []string{
	"\n.\n", "\r.\r", "\n.\r\n", "\r.\r\n", "\r\n.\n", "\r\n.\r", "\r\n.\r\r\n",
	"\r\n\x00.\r\n", "\r\n.\x00\r\n", "\n.\r", "\r.\n", "\r\n\n.\r\n", "\r\n.\n\r\n",
}

// RelayForms are the RCPT TO arguments of nmap's smtp-open-relay script
// and other relay tricks; ours is one of our domains, relay.test is not.
// Every one must be refused with a 5xx reply.
func RelayForms(ours string) []string {
	return []string{
		"<alice@relay.test>",
		"<alice%relay.test@" + ours + ">",
		"<alice%relay.test@[127.0.0.1]>",
		"<\"alice@relay.test\">",
		"<\"alice%relay.test\">",
		"<alice@relay.test@" + ours + ">",
		"<\"alice@relay.test\"@" + ours + ">",
		"<alice@relay.test@[127.0.0.1]>",
		"<@" + ours + ":alice@relay.test>",
		"<@[127.0.0.1]:alice@relay.test>",
		"<relay.test!alice>",
		"<relay.test!alice@" + ours + ">",
		"<relay.test!alice@[127.0.0.1]>",
		"<alice@[127.0.0.1]>",
		"<alice@" + ours + ".relay.test>",
		"<\"alice relay\"@" + ours + ">",
	}
}

// RunRelayForms checks that every relay form is refused, whatever the
// sender claims, on a new connection each.
func RunRelayForms(t *testing.T, addr, ours string) {
	for _, form := range RelayForms(ours) {
		for _, from := range []string{"<>", "<postmaster@" + ours + ">"} {
			d := Dial(t, addr)
			d.Cmd("EHLO "+ours, "250")
			d.Cmd("MAIL FROM:"+from, "250")
			got := d.Cmd("RCPT TO:"+form, "5")
			if !strings.HasPrefix(got, "550") && !strings.HasPrefix(got, "501") {
				t.Errorf("RCPT TO:%s from %s: %q, want 550 (or 501 syntax)", form, from, got)
			}
			d.Conn.Close()
		}
	}
}

// RunSmuggling sends one message whose data hides a second transaction
// behind each smuggling form, and checks it is refused with 550 5.5.2,
// the connection is closed and stored() does not change.
func RunSmuggling(t *testing.T, addr, rcpt string, stored func() int) {
	for i, form := range SmugglingForms {
		t.Run(fmt.Sprintf("%q", form), func(t *testing.T) {
			before := stored()
			d := Dial(t, addr)
			d.Cmd("EHLO client.example", "250")
			d.Cmd("MAIL FROM:<bob@remote.example>", "250")
			d.Cmd("RCPT TO:<"+rcpt+">", "250")
			d.Cmd("DATA", "354")
			d.Send("Subject: first\r\n\r\nfirst message" + form +
				"MAIL FROM:<evil@remote.example>\r\nRCPT TO:<" + rcpt + ">\r\nDATA\r\n" +
				fmt.Sprintf("Subject: smuggled %d\r\n\r\nsecond message\r\n.\r\n", i))
			got := d.Reply()
			if !strings.HasPrefix(got, "550 5.5.2") {
				t.Errorf("reply %q, want 550 5.5.2", got)
			}
			if !d.Closed() {
				t.Errorf("connection still open after a smuggling attempt")
			}
			if n := stored(); n != before {
				t.Errorf("%d messages stored", n-before)
			}
		})
	}
}

// RunPipelinedData sends content before the 354 reply.
func RunPipelinedData(t *testing.T, addr, rcpt string, stored func() int) {
	before := stored()
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("RCPT TO:<"+rcpt+">", "250")
	d.Send("DATA\r\nSubject: early\r\n\r\nbody\r\n.\r\nMAIL FROM:<evil@remote.example>\r\n")
	d.Expect("354")
	if got := d.Reply(); !strings.HasPrefix(got, "554 5.5.0") {
		t.Errorf("reply %q, want 554 5.5.0", got)
	}
	if !d.Closed() {
		t.Errorf("connection still open")
	}
	if n := stored(); n != before {
		t.Errorf("%d messages stored", n-before)
	}
}

// RunPipelinedDataAtBoundary sends MAIL, RCPT and DATA so that DATA's
// line ends exactly at byte 4096, then the content, all in one write:
// go-smtp's reader (4 KiB) then holds the commands and nothing more, and
// the content waits in the read-ahead under it, still sent before the
// 354.
func RunPipelinedDataAtBoundary(t *testing.T, addr, rcpt string, stored func() int) {
	before := stored()
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	cmds := "MAIL FROM:<bob@remote.example>\r\nRCPT TO:<" + rcpt + ">\r\n"
	for pad := 4096 - len(cmds) - len("DATA\r\n"); pad > 0; {
		// NOOPs fill the 4 KiB: each a command of the group.
		n := min(pad, 500)
		if pad-n > 0 && pad-n < len("NOOP \r\n") {
			n = pad - len("NOOP \r\n")
		}
		cmds += "NOOP " + strings.Repeat("x", n-len("NOOP \r\n")) + "\r\n"
		pad -= n
	}
	cmds += "DATA\r\n"
	if len(cmds) != 4096 {
		t.Fatalf("commands of %d bytes", len(cmds))
	}
	d.Send(cmds + "Subject: early\r\n\r\nbody\r\n.\r\n")
	d.Expect("250") // MAIL
	d.Expect("250") // RCPT
	for range strings.Count(cmds, "NOOP") {
		d.Expect("250")
	}
	d.Expect("354")
	if got := d.Reply(); !strings.HasPrefix(got, "554 5.5.0") {
		t.Errorf("reply %q, want 554 5.5.0", got)
	}
	if n := stored(); n != before {
		t.Errorf("%d messages stored", n-before)
	}
}

// RunBDAT sends a good message and one with a bare LF in chunks.
func RunBDAT(t *testing.T, addr, rcpt string, stored func() int) {
	before := stored()
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("RCPT TO:<"+rcpt+">", "250")
	chunk1, chunk2 := "Subject: chunked\r\n\r\nfirst ", "chunk\r\n"
	d.Send(fmt.Sprintf("BDAT %d\r\n%s", len(chunk1), chunk1))
	d.Expect("250")
	d.Send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk2), chunk2))
	d.Expect("250")
	if n := stored(); n != before+1 {
		t.Fatalf("good BDAT message: %d stored", n-before)
	}
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("RCPT TO:<"+rcpt+">", "250")
	bad := "Subject: bare\r\n\r\nline\n.\nMAIL FROM:<x@y>\r\n"
	d.Send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(bad), bad))
	d.Expect("550 5.5.2")
	if n := stored(); n != before+1 {
		t.Errorf("bare LF in BDAT: %d stored", n-before-1)
	}
}

func TestSmuggling(t *testing.T) {
	_, st, addr := startTestServer(t, func(s *Server) { s.TLS = selfSigned(t) })
	RunSmuggling(t, addr, "alice@example.test", st.count)
	RunPipelinedData(t, addr, "alice@example.test", st.count)
	RunBDAT(t, addr, "alice@example.test", st.count)
	RunSmugglingTLS(t, addr, "alice@example.test", st.count)
}

func TestRelayForms(t *testing.T) {
	_, st, addr := startTestServer(t, nil)
	RunRelayForms(t, addr, "example.test")
	if st.count() != 0 {
		t.Errorf("stored %d", st.count())
	}
}

// RunSmugglingTLS sends the one form only the strict reader can see
// ("\r\n.\r\r\n": go-smtp's own reader drops the ".\r") inside STARTTLS,
// where the reader sits on the TLS connection.
func RunSmugglingTLS(t *testing.T, addr, rcpt string, stored func() int) {
	before := stored()
	d := Dial(t, addr)
	d.Cmd("EHLO client.example", "250")
	d = d.StartTLS(&tls.Config{InsecureSkipVerify: true})
	d.Cmd("EHLO client.example", "250")
	d.Cmd("MAIL FROM:<bob@remote.example>", "250")
	d.Cmd("RCPT TO:<"+rcpt+">", "250")
	d.Cmd("DATA", "354")
	d.Send("Subject: one\r\n\r\nfirst\r\n.\r\r\nMAIL FROM:<evil@remote.example>\r\nRCPT TO:<" + rcpt +
		">\r\nDATA\r\nSubject: two\r\n\r\nsecond\r\n.\r\n")
	if got := d.Reply(); !strings.HasPrefix(got, "550 5.5.2") {
		t.Errorf("over TLS: reply %q, want 550 5.5.2", got)
	}
	if n := stored(); n != before {
		t.Errorf("over TLS: %d messages stored", n-before)
	}
}
