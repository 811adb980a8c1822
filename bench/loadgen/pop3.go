package main

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// pop3Conn is a minimal POP3 client (RFC 1939).
type pop3Conn struct {
	c net.Conn
	r *bufio.Reader
}

func (p *pop3Conn) cmd(line string) (string, error) {
	if line != "" {
		if _, err := p.c.Write([]byte(line + "\r\n")); err != nil {
			return "", err
		}
	}
	resp, err := p.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	resp = strings.TrimRight(resp, "\r\n")
	if !strings.HasPrefix(resp, "+OK") {
		verb := "greeting"
		if f := strings.Fields(line); len(f) > 0 {
			verb = f[0]
		}
		return resp, fmt.Errorf("%s: %s", verb, resp)
	}
	return resp, nil
}

// pop3Result is the POP3 figures.
type pop3Result struct {
	LoginStat time.Duration // dial, USER, PASS, STAT
	Messages  int
	Bytes     int64 // octets received in RETR responses (dot-stuffed, CRLF)
	Retr      time.Duration
}

// pop3RetrAll logs in, STATs, then RETRs every message in turn; nothing is
// deleted.
func pop3RetrAll(addr, user, pass string) (pop3Result, error) {
	var res pop3Result
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return res, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Minute))
	p := &pop3Conn{c: c, r: bufio.NewReaderSize(c, 64<<10)}
	if _, err := p.cmd(""); err != nil {
		return res, err
	}
	if _, err := p.cmd("USER " + user); err != nil {
		return res, err
	}
	if _, err := p.cmd("PASS " + pass); err != nil {
		return res, err
	}
	stat, err := p.cmd("STAT")
	if err != nil {
		return res, err
	}
	res.LoginStat = time.Since(start)
	f := strings.Fields(stat)
	if len(f) < 3 {
		return res, fmt.Errorf("STAT: %q", stat)
	}
	res.Messages, _ = strconv.Atoi(f[1])
	t0 := time.Now()
	for i := 1; i <= res.Messages; i++ {
		if _, err := p.cmd(fmt.Sprintf("RETR %d", i)); err != nil {
			return res, err
		}
		for {
			line, err := p.r.ReadSlice('\n')
			if err == bufio.ErrBufferFull {
				res.Bytes += int64(len(line))
				continue
			}
			if err != nil {
				return res, err
			}
			if string(line) == ".\r\n" {
				break
			}
			res.Bytes += int64(len(line))
		}
	}
	res.Retr = time.Since(t0)
	p.cmd("QUIT")
	return res, nil
}
