package crash

import (
	"bufio"
	"io"
	"log"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// testMX is the remote side: an SMTP server on loopback that records the
// X-Crash-ID of every message it accepts.
type testMX struct {
	srv  *smtp.Server
	Port int

	// Delay is how long DATA waits before answering 250, so that kills
	// land while deliveries are in flight.
	Delay time.Duration

	mu       sync.Mutex
	received map[string]int // X-Crash-ID -> times received
	total    int
	changed  chan struct{}
}

func startMX(t *testing.T) *testMX {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mx := &testMX{received: map[string]int{}, changed: make(chan struct{}, 1)}
	mx.Port = ln.Addr().(*net.TCPAddr).Port
	mx.srv = smtp.NewServer(mx)
	mx.srv.Domain = "mx.remote.test"
	mx.srv.MaxMessageBytes = 64 << 20
	mx.srv.ReadTimeout = time.Minute
	mx.srv.WriteTimeout = time.Minute
	mx.srv.ErrorLog = log.New(io.Discard, "", 0) // resets by killed clients are expected
	go mx.srv.Serve(ln)
	t.Cleanup(func() { mx.srv.Close() })
	return mx
}

// NewSession implements smtp.Backend.
func (mx *testMX) NewSession(*smtp.Conn) (smtp.Session, error) { return &mxSession{mx: mx}, nil }

type mxSession struct{ mx *testMX }

func (s *mxSession) Reset()                                    {}
func (s *mxSession) Logout() error                             { return nil }
func (s *mxSession) Mail(string, *smtp.MailOptions) error      { return nil }
func (s *mxSession) Rcpt(to string, _ *smtp.RcptOptions) error { return nil }

// Data reads the header, records the message's X-Crash-ID, and only then
// answers (after Delay).
func (s *mxSession) Data(r io.Reader) error {
	tp := textproto.NewReader(bufio.NewReader(r))
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, tp.R); err != nil {
		return err
	}
	if d := s.mx.Delay; d > 0 {
		time.Sleep(d)
	}
	s.mx.record(strings.TrimSpace(h.Get("X-Crash-ID")))
	return nil
}

func (mx *testMX) record(id string) {
	mx.mu.Lock()
	mx.received[id]++
	mx.total++
	mx.mu.Unlock()
	select {
	case mx.changed <- struct{}{}:
	default:
	}
}

// count is how many times id was received.
func (mx *testMX) count(id string) int {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	return mx.received[id]
}

// waitAll waits until every id was received at least once, or timeout.
func (mx *testMX) waitAll(ids []string, timeout time.Duration) (missing []string) {
	deadline := time.After(timeout)
	for {
		missing = missing[:0]
		for _, id := range ids {
			if mx.count(id) == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-mx.changed:
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			return missing
		}
	}
}
