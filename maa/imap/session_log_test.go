package imap

import (
	"log/slog"
	"strings"
	"testing"
)

// TestSessionLogLines: the session's log lines (its logger is made when
// something is logged) name the protocol, connection, remote address and,
// once known, the account; a failed login's line holds no password.
func TestSessionLogLines(t *testing.T) {
	var logs syncBuffer
	e := newTestEnv(t, func(s *Server) {
		s.AllowPlaintextAuth = true
		s.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	conn, r, _ := e.dialPlain()
	send := func(line, wantPrefix string) {
		t.Helper()
		conn.Write([]byte(line + "\r\n"))
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			if !strings.HasPrefix(l, "*") {
				if !strings.HasPrefix(l, wantPrefix) {
					t.Fatalf("%s: %q", line, l)
				}
				return
			}
		}
	}
	send(`a LOGIN alice@example.test "wrong guess 1234"`, "a NO")
	send(`b LOGIN alice@example.test "`+testPass+`"`, "b OK")
	var failed, ok string
	for _, l := range strings.Split(logs.String(), "\n") {
		switch {
		case strings.Contains(l, `msg="imap login failed"`):
			failed = l
		case strings.Contains(l, `msg="imap login"`):
			ok = l
		}
	}
	local := conn.LocalAddr().String()
	for _, l := range []string{failed, ok} {
		if !strings.Contains(l, "proto=imap") || !strings.Contains(l, "conn=") || !strings.Contains(l, "remote="+local) {
			t.Errorf("log line without proto, conn or remote %s: %q", local, l)
		}
	}
	if !strings.Contains(ok, "account=alice@example.test") {
		t.Errorf("login line without the account: %q", ok)
	}
	if strings.Contains(logs.String(), "wrong guess") || strings.Contains(logs.String(), testPass) {
		t.Error("a password reached the log")
	}
}
