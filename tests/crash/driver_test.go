package crash

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Accounts of the test; Password is theirs.
var localUsers = []string{"alice@example.test", "bob@example.test", "carol@example.test"}

const password = "crash test password"

// outMsg is one message of the run.
type outMsg struct {
	ID     string   // X-Crash-ID
	Remote bool     // submitted on 587 to a remote recipient, else port 25
	To     []string // envelope recipients
	Body   []byte
}

// newMessage makes message n: even numbers go over port 25 to one or two
// local accounts, odd ones (if remote) over submission to remote.test.
func newMessage(n int, remote bool, rng *rand.Rand) outMsg {
	m := outMsg{ID: fmt.Sprintf("m%06d", n), Remote: remote}
	if remote {
		m.To = []string{fmt.Sprintf("r%d@remote.test", n)}
	} else {
		m.To = []string{localUsers[n%len(localUsers)]}
		if n%10 == 4 {
			m.To = append(m.To, localUsers[(n+1)%len(localUsers)])
		}
	}
	size := 200 + rng.IntN(8000)
	if rng.IntN(50) == 0 {
		size = 100_000 + rng.IntN(200_000) // spans several store chunks
	}
	var b bytes.Buffer
	from := "sender@peer.test"
	if remote {
		from = localUsers[0]
	}
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: crash test %s\r\n", from, m.To[0], m.ID)
	fmt.Fprintf(&b, "Message-ID: <%s@crash.test>\r\nDate: %s\r\nX-Crash-ID: %s\r\n\r\n",
		m.ID, time.Now().Format(time.RFC1123Z), m.ID)
	line := []byte("0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n")
	for b.Len() < size {
		b.Write(line)
	}
	m.Body = b.Bytes()
	return m
}

// ledger records which messages got a 250.
type ledger struct {
	acked    atomic.Int64
	attempts atomic.Int64
	mu       sync.Mutex
	ok       map[string]int // ID -> 250s received
	perm     []string       // permanent failures: a bug
}

func newLedger() *ledger { return &ledger{ok: map[string]int{}} }

func (l *ledger) ack(id string) {
	l.mu.Lock()
	l.ok[id]++
	l.mu.Unlock()
	l.acked.Add(1)
}

// send delivers m once; nil means the server answered 250 to the data.
func send(p *proc, m outMsg) error {
	listener := "smtp"
	if m.Remote {
		listener = "submission"
	}
	addr := p.addr(listener)
	if addr == "" {
		return errors.New("server restarting")
	}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(time.Minute))
	var c *smtp.Client
	if m.Remote {
		c, err = smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true, ServerName: "mail.example.test"})
		if err != nil {
			conn.Close()
			return err
		}
		if err := c.Auth(sasl.NewPlainClient("", localUsers[0], password)); err != nil {
			c.Close()
			return err
		}
	} else {
		c = smtp.NewClient(conn)
		if err := c.Hello("driver.peer.test"); err != nil {
			c.Close()
			return err
		}
	}
	defer c.Close()
	from := "sender@peer.test"
	if m.Remote {
		from = localUsers[0]
	}
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, to := range m.To {
		if err := c.Rcpt(to, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(m.Body); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	c.Quit()
	return nil
}

// isPermanent reports a 5xx reply: the server refused the message for good.
func isPermanent(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code >= 500
}

// drive sends every message with workers goroutines, retrying each until
// it gets a 250 or deadline passes.
func drive(p *proc, msgs []outMsg, workers int, l *ledger, deadline time.Time) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(msgs) || failed.Load() != nil {
					return
				}
				if err := deliverOne(p, msgs[i], l, deadline); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		return err
	}
	return nil
}

func deliverOne(p *proc, m outMsg, l *ledger, deadline time.Time) error {
	backoff := 5 * time.Millisecond
	for {
		l.attempts.Add(1)
		err := send(p, m)
		if err == nil {
			l.ack(m.ID)
			return nil
		}
		if isPermanent(err) {
			l.mu.Lock()
			l.perm = append(l.perm, fmt.Sprintf("%s: %v", m.ID, err))
			l.mu.Unlock()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("message %s still not accepted at the deadline: %v", m.ID, err)
		}
		time.Sleep(backoff)
		backoff = min(backoff*2, 200*time.Millisecond)
	}
}
