package dkim

import (
	"strings"
	"testing"
)

// BenchmarkSign signs a 1 KiB and a 100 KiB message with both keys
// (ed25519 and RSA-2048), as the MSA does for each submitted message.
func BenchmarkSign(b *testing.B) {
	s, err := NewSigner(keys(b))
	if err != nil {
		b.Fatal(err)
	}
	line := strings.Repeat("0123456789abcdef", 4)[:62] + "\r\n"
	for _, c := range []struct {
		name string
		size int
	}{{"1KiB", 1 << 10}, {"100KiB", 100 << 10}} {
		msg := []byte(message + strings.Repeat(line, c.size/len(line)))
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Sign(msg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
		})
	}
}
