package hostile

import (
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
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
