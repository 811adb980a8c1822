package hostile

import (
	"encoding/base64"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/harness"
)

// TestSlowConnections opens 2,000 connections (SMTP, IMAP, POP3) that each
// send one byte and then nothing for a while, as a slowloris attack does
// (one byte every 10 s; the test holds them for a few seconds). A normal
// client must still get its greeting within 1 s on every protocol.
//
// Memory budget: 64 KiB per slow connection (Go heap and stacks, server
// and test client together; 125 MiB for 2,000), and at most 4 goroutines
// per connection.
func TestSlowConnections(t *testing.T) {
	n := envInt("POSTHORN_HOSTILE_SLOW", 2000)
	hold := time.Duration(envInt("POSTHORN_HOSTILE_SLOW_SECONDS", 2)) * time.Second
	raiseNOFILE(t, uint64(2*n+500))
	env := start(t, nil)
	targets := []struct{ listener, first string }{
		{"smtp", "E"}, {"smtp", "E"}, {"imap", "a"}, {"pop3", "U"},
	}
	mem := watchMem()
	baseG := runtime.NumGoroutine()

	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// 40 connections per source address, under the per-IP cap of 50.
	for i := 0; i < n; i++ {
		tg := targets[i%len(targets)]
		local := fmt.Sprintf("127.0.%d.%d", 1+i/40/250, 10+(i/40)%250)
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", env.Addr(tg.listener))
		if err != nil {
			t.Fatalf("slow connection %d: %v", i, err)
		}
		conns = append(conns, c)
		c.Write([]byte(tg.first))
	}
	t0 := time.Now()

	// A normal client, from yet another address, gets its greeting at once.
	for _, p := range []struct{ listener, prefix string }{
		{"smtp", "220 "}, {"submission", "220 "}, {"imap", "* OK"}, {"pop3", "+OK"},
	} {
		var g string
		within(t, p.listener+" greeting during the attack", time.Second, func() {
			tc := dialFrom(t, "127.0.0.5", env.Addr(p.listener))
			tc.deadline(2 * time.Second)
			g, _ = tc.readLine()
			tc.c.Close()
		})
		if !strings.HasPrefix(g, p.prefix) {
			t.Errorf("%s greeting during the attack: %q", p.listener, g)
		}
	}

	time.Sleep(hold - time.Since(t0))
	grewG := runtime.NumGoroutine() - baseG
	t.Logf("%d slow connections: %d goroutines more", n, grewG)
	if grewG > 4*n {
		t.Errorf("%d goroutines for %d slow connections (budget 4 per connection)", grewG, n)
	}
	mem.check(t, fmt.Sprintf("%d slow connections", n), uint64(n)*64<<10)

	// The second byte of each, then they go away.
	for i, c := range conns {
		c.Write([]byte(targets[i%len(targets)].first))
	}
}

// TestSlowSteadyData sends messages in small pieces with pauses shorter
// than command_timeout, on port 25 and on submission, as a large
// attachment goes over a slow uplink (RFC 5321 section 4.5.3.2: the
// timeout is per read, not per transfer). A sender that keeps sending is
// not cut at command_timeout; one that trickles for longer than
// data_timeout (plus the time its bytes take at 1 KiB/s) is, with 421.
func TestSlowSteadyData(t *testing.T) {
	env := start(t, func(c *config.Config) {
		c.Limits.CommandTimeout.Duration = time.Second
		c.Limits.DataTimeout.Duration = 4 * time.Second
	})
	for _, listener := range []string{"smtp", "submission"} {
		for _, steady := range []bool{true, false} {
			name := listener + "/trickle"
			if steady {
				name = listener + "/steady"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				tc := dial(t, env.Addr(listener))
				tc.deadline(20 * time.Second)
				tc.expectSMTP(220)
				tc.write("EHLO client.test\r\n")
				tc.expectSMTP(250)
				if listener == "submission" {
					auth := base64.StdEncoding.EncodeToString([]byte("\x00" + harness.User + "\x00" + harness.Password))
					tc.write("AUTH PLAIN " + auth + "\r\n")
					tc.expectSMTP(235)
				}
				tc.write("MAIL FROM:<" + harness.User + ">\r\n")
				tc.expectSMTP(250)
				tc.write("RCPT TO:<" + harness.User + ">\r\n")
				tc.expectSMTP(250)
				tc.write("DATA\r\n")
				tc.expectSMTP(354)
				tc.write("From: <" + harness.User + ">\r\nSubject: " + name + "\r\n\r\n")
				start := time.Now()
				// Steady: 2.5 s of pieces 250 ms apart, past
				// command_timeout (1 s) but within data_timeout (4 s).
				// Trickle: the same pieces until the server hangs up.
				for i := 0; !steady || i < 10; i++ {
					if _, err := tc.c.Write([]byte(fmt.Sprintf("line %d\r\n", i))); err != nil {
						break
					}
					if !steady && time.Since(start) > 8*time.Second {
						t.Fatal("trickling sender not cut after 8 s")
					}
					time.Sleep(250 * time.Millisecond)
					if !steady { // has the server answered?
						tc.c.SetReadDeadline(time.Now().Add(time.Millisecond))
						if _, err := tc.r.Peek(1); err == nil {
							break
						}
						tc.deadline(20 * time.Second)
					}
				}
				if steady {
					tc.write(".\r\n")
					tc.expectSMTP(250)
					return
				}
				code, lines := tc.smtpReply()
				took := time.Since(start)
				if code != 421 || !strings.Contains(lines[0], "4.4.2") {
					t.Errorf("trickling sender got %q, want 421 4.4.2", lines)
				}
				if took < 3500*time.Millisecond {
					t.Errorf("trickling sender cut after %v, before data_timeout (4 s)", took.Round(time.Millisecond))
				}
			})
		}
	}
}
