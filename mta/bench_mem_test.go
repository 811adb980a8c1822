package mta

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-smtp"
)

// BenchmarkInboundProtocol is BenchmarkInbound without the disk: the same
// transactions against a Server whose store is in memory, which bounds
// what the SMTP path itself (go-smtp, strict DATA reader, SPF/DKIM/DMARC
// lookups on loopback DNS, header building) costs per message.
func BenchmarkInboundProtocol(b *testing.B) {
	for _, conns := range []int{1, 32} {
		b.Run(fmt.Sprintf("size=1KiB/conns=%d", conns), func(b *testing.B) {
			_, _, addr := startTestServer(b, nil)
			msg := "From: <bench@remote.example>\r\nSubject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 12)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for w := 0; w < conns; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if err := sendOne(addr, msg); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
		})
	}
}

func sendOne(addr, msg string) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		return err
	}
	if err := c.SendMail("bench@remote.example", []string{"alice@example.test"}, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}
