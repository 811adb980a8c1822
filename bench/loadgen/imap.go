package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// imapConn is a minimal IMAP client (RFC 9051 / RFC 3501): it sends one
// command at a time and reads responses, consuming literals.
type imapConn struct {
	c   net.Conn
	r   *bufio.Reader
	tag int
}

func dialIMAP(addr, user, pass string) (*imapConn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	m := &imapConn{c: c, r: bufio.NewReaderSize(c, 64<<10)}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := m.readLine(nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	if !bytes.HasPrefix(line, []byte("* OK")) {
		c.Close()
		return nil, fmt.Errorf("greeting %q", line)
	}
	if _, err := m.run(fmt.Sprintf("LOGIN %s %s", quote(user), quote(pass)), nil); err != nil {
		c.Close()
		return nil, err
	}
	return m, nil
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// readLine reads one response line including any literals it announces;
// literal bytes are counted in *lit (if not nil) and dropped from the line.
func (m *imapConn) readLine(lit *int64) ([]byte, error) {
	var out []byte
	for {
		part, err := m.r.ReadSlice('\n')
		out = append(out, part...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return out, err
		}
		n, ok := literalLen(out)
		if !ok {
			return bytes.TrimRight(out, "\r\n"), nil
		}
		if _, err := m.r.Discard(int(n)); err != nil {
			return out, err
		}
		if lit != nil {
			*lit += n
		}
		out = out[:bytes.LastIndexByte(out, '{')]
	}
}

// literalLen reports whether line ends with a literal announcement {N}.
func literalLen(line []byte) (int64, bool) {
	l := bytes.TrimRight(line, "\r\n")
	if len(l) < 3 || l[len(l)-1] != '}' {
		return 0, false
	}
	i := bytes.LastIndexByte(l, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(string(l[i+1:len(l)-1]), "+"), 10, 64)
	return n, err == nil
}

// run sends a command and reads until its tagged reply; untagged lines go
// to onLine. It returns the number of literal bytes received.
func (m *imapConn) run(cmd string, onLine func([]byte)) (int64, error) {
	m.tag++
	tag := fmt.Sprintf("t%d", m.tag)
	m.c.SetDeadline(time.Now().Add(10 * time.Minute))
	if _, err := m.c.Write([]byte(tag + " " + cmd + "\r\n")); err != nil {
		return 0, err
	}
	return m.wait(tag, onLine)
}

func (m *imapConn) wait(tag string, onLine func([]byte)) (int64, error) {
	var lit int64
	for {
		line, err := m.readLine(&lit)
		if err != nil {
			return lit, err
		}
		if bytes.HasPrefix(line, []byte(tag+" ")) {
			rest := line[len(tag)+1:]
			if !bytes.HasPrefix(rest, []byte("OK")) {
				return lit, fmt.Errorf("%s: %s", strings.Fields(tagless(line))[0], rest)
			}
			return lit, nil
		}
		if onLine != nil {
			onLine(line)
		}
	}
}

func tagless(b []byte) string {
	s := string(b)
	if i := strings.IndexByte(s, ' '); i >= 0 {
		return s[i+1:] + " "
	}
	return s + " "
}

// status returns the number of messages in a mailbox.
func (m *imapConn) status(mailbox string) (int, error) {
	n := -1
	_, err := m.run("STATUS "+quote(mailbox)+" (MESSAGES)", func(line []byte) {
		s := string(line)
		if i := strings.Index(s, "MESSAGES "); i >= 0 {
			f := strings.TrimRight(strings.Fields(s[i+len("MESSAGES "):])[0], ")")
			n, _ = strconv.Atoi(f)
		}
	})
	if err == nil && n < 0 {
		err = fmt.Errorf("STATUS without MESSAGES")
	}
	return n, err
}

// idle enters IDLE (RFC 2177) and returns once the server has answered
// with its continuation.
func (m *imapConn) idle() error {
	m.tag++
	m.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(m.c, "t%d IDLE\r\n", m.tag); err != nil {
		return err
	}
	for {
		line, err := m.readLine(nil)
		if err != nil {
			return err
		}
		if bytes.HasPrefix(line, []byte("+")) {
			m.c.SetDeadline(time.Time{})
			return nil
		}
		if bytes.HasPrefix(line, []byte(fmt.Sprintf("t%d ", m.tag))) {
			return fmt.Errorf("IDLE: %s", line)
		}
	}
}

// waitExists waits in IDLE for an EXISTS response with a count of at
// least n.
func (m *imapConn) waitExists(n int, timeout time.Duration) error {
	m.c.SetDeadline(time.Now().Add(timeout))
	for {
		line, err := m.readLine(nil)
		if err != nil {
			return err
		}
		f := strings.Fields(string(line))
		if len(f) == 3 && f[0] == "*" && strings.EqualFold(f[2], "EXISTS") {
			if k, _ := strconv.Atoi(f[1]); k >= n {
				return nil
			}
		}
	}
}

func (m *imapConn) logout() {
	m.c.SetDeadline(time.Now().Add(5 * time.Second))
	m.run("LOGOUT", nil)
	m.c.Close()
}

// waitCount polls STATUS until mailbox holds at least n messages.
func waitCount(addr, user, pass, mailbox string, n int, timeout time.Duration) error {
	m, err := dialIMAP(addr, user, pass)
	if err != nil {
		return err
	}
	defer m.logout()
	deadline := time.Now().Add(timeout)
	for {
		got, err := m.status(mailbox)
		if err != nil {
			return err
		}
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s has %d of %d messages after %v: %w", user, got, n, timeout, errTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
