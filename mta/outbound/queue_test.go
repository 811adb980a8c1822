package outbound_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/posthorn/posthorn/store"
)

// pausingStore stops the first QueueEntries call after arm between its
// read and its return, until proceed is closed: the window in which a
// "queue retry" holds a copy of the queue.
type pausingStore struct {
	store.Store
	armed         atomic.Bool
	read, proceed chan struct{}
}

func (s *pausingStore) QueueEntries() ([]store.QueueEntry, error) {
	es, err := s.Store.QueueEntries()
	if s.armed.CompareAndSwap(true, false) {
		close(s.read)
		<-s.proceed
	}
	return es, err
}

// TestRetryDuringDeliveryKeepsOutcome: "queue retry" of every entry while
// one is being delivered must not write back a copy read before the
// worker recorded the attempt: the delivered recipient would be undone
// and get the message twice.
func TestRetryDuringDeliveryKeepsOutcome(t *testing.T) {
	inData, release := make(chan struct{}, 10), make(chan struct{})
	f := startFakeMX(t, func(rcpt string, n int) error {
		if strings.HasPrefix(rcpt, "grey@") && n == 1 {
			return rcptError(451, smtp.EnhancedCode{4, 7, 1}, "greylisted")
		}
		return nil
	})
	f.mu.Lock()
	f.beforeData = func() { inData <- struct{}{}; <-release }
	f.mu.Unlock()
	e := newQueueEnv(t, f.port())
	e.Q.RetryInitial, e.Q.RetryMax = time.Hour, time.Hour
	ps := &pausingStore{Store: e.St, read: make(chan struct{}), proceed: make(chan struct{})}
	e.Q.Store = ps
	e.mx(t, "remote.test")
	e.run(t)
	qe := e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test", "grey@remote.test")
	<-inData // bob's transaction is in DATA

	ps.armed.Store(true)
	retried := make(chan error, 1)
	go func() { retried <- e.Q.Retry("") }()
	<-ps.read // Retry holds its copy: bob not done
	f.mu.Lock()
	f.beforeData = nil
	f.mu.Unlock()
	close(release)
	f.wait(t)
	e.waitEntry(t, qe.ID, func(g store.QueueEntry) bool { return g.Attempts == 1 && g.Recipients[0].Done })
	close(ps.proceed)
	if err := <-retried; err != nil {
		t.Fatal(err)
	}
	if got := f.wait(t); strings.Join(got.Rcpts, ",") != "grey@remote.test" {
		t.Fatalf("the retry went to %v, want grey@remote.test alone", got.Rcpts)
	}
	e.waitEmpty(t)
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := f.tries["bob@remote.test"]; n != 1 {
		t.Fatalf("bob@remote.test offered %d times, want 1", n)
	}
}

// TestDropDuringDelivery: an entry dropped while its attempt runs gets no
// DSN, whatever the attempt's outcome, and its attempt is cut short.
func TestDropDuringDelivery(t *testing.T) {
	inData, release := make(chan struct{}, 10), make(chan struct{})
	f := startFakeMX(t, func(rcpt string, _ int) error {
		if strings.HasPrefix(rcpt, "nobody@") {
			return rcptError(550, smtp.EnhancedCode{5, 1, 1}, "no such user")
		}
		return nil
	})
	f.mu.Lock()
	f.beforeData = func() { inData <- struct{}{}; <-release }
	f.mu.Unlock()
	e := newQueueEnv(t, f.port())
	e.Q.Workers = 1
	e.mx(t, "remote.test")
	e.run(t)
	qe := e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test", "nobody@remote.test")
	<-inData
	// queue list says so, rather than "0 attempts, next try now".
	if !e.Q.Delivering(qe.ID) {
		t.Error("an entry in DATA is not reported as being delivered")
	}
	if err := e.Q.Drop(qe.ID); err != nil {
		t.Fatal(err)
	}
	// The attempt ends without waiting for the server's reply: the one
	// worker is free for another entry.
	e.enqueue(t, "alice@local.test", "alice@local.test", "nobody@remote.test")
	dsn := e.MDA.wait(t) // the second entry's bounce: the worker is free
	close(release)
	if !strings.Contains(dsn, "rfc822; nobody@remote.test") {
		t.Fatalf("DSN:\n%s", dsn)
	}
	e.waitEmpty(t)
	if e.Q.Delivering(qe.ID) {
		t.Error("a dropped entry is still reported as being delivered")
	}
	select {
	case dsn := <-e.MDA.ch:
		t.Fatalf("a DSN for the dropped entry:\n%s", dsn)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestSlowDestinationLeavesWorkers: entries for a destination that does
// not answer take at most a quarter of the workers; mail for another
// domain goes.
func TestSlowDestinationLeavesWorkers(t *testing.T) {
	f := startFakeMX(t, nil)
	// A tarpit on 127.0.0.2 at the same port: it accepts and never greets.
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(f.port())))
	if err != nil {
		t.Skip("cannot listen on 127.0.0.2:", err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	e := newQueueEnv(t, f.port()) // two workers
	e.mx(t, "remote.test")
	e.DNS.Add(t, "slow.test. 300 IN MX 10 mx.slow.test.", "mx.slow.test. 300 IN A 127.0.0.2")
	e.enqueue(t, "alice@local.test", "alice@local.test", "a@slow.test")
	e.enqueue(t, "alice@local.test", "alice@local.test", "b@slow.test")
	e.enqueue(t, "alice@local.test", "alice@local.test", "fast@remote.test")
	e.run(t)
	if got := f.wait(t); got.Rcpts[0] != "fast@remote.test" {
		t.Fatalf("got %v", got.Rcpts)
	}
}

// TestShutdownKeepsEarlierDomains: a shutdown during the transaction
// with one domain keeps what the other domains' servers already took, so
// the restarted queue does not send them the message again.
func TestShutdownKeepsEarlierDomains(t *testing.T) {
	f := startFakeMX(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	f.mu.Lock()
	f.beforeData = func() {
		f.mu.Lock()
		n++
		second := n == 2
		f.mu.Unlock()
		if second { // the second domain: shut down before its 250
			cancel()
			time.Sleep(200 * time.Millisecond)
		}
	}
	f.mu.Unlock()
	e := newQueueEnv(t, f.port())
	e.Q.Workers = 1
	e.mx(t, "one.test")
	e.mx(t, "two.test")
	qe := e.enqueue(t, "alice@local.test", "alice@local.test", "bob@one.test", "carol@two.test")
	done := make(chan struct{})
	go func() { e.Q.Run(ctx); close(done) }()
	first := f.wait(t)
	<-done
	got, err := e.St.QueueEntry(qe.ID)
	if errors.Is(err, store.ErrNotFound) {
		return // both taken and recorded: fine
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got.Recipients {
		if r.Address == first.Rcpts[0] && !r.Done {
			t.Errorf("%s took the message before the shutdown, but it is still to be sent: %+v", r.Address, got.Recipients)
		}
	}
}

// TestShutdownDuringDSNKeepsDeliveries: a shutdown while the bounce for
// one recipient is being delivered keeps the other recipient's delivery;
// the failed one is tried (and bounced) again later.
func TestShutdownDuringDSNKeepsDeliveries(t *testing.T) {
	f := startFakeMX(t, func(rcpt string, _ int) error {
		if strings.HasPrefix(rcpt, "nobody@") {
			return rcptError(550, smtp.EnhancedCode{5, 1, 1}, "no such user")
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := newQueueEnv(t, f.port())
	e.Q.Workers = 1
	e.MDA.hook = func(dctx context.Context) error {
		cancel()
		<-dctx.Done()
		return dctx.Err()
	}
	e.mx(t, "remote.test")
	qe := e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test", "nobody@remote.test")
	done := make(chan struct{})
	go func() { e.Q.Run(ctx); close(done) }()
	<-done
	got, err := e.St.QueueEntry(qe.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got.Recipients {
		switch {
		case r.Address == "bob@remote.test" && !r.Done:
			t.Errorf("bob took the message, but it is still to be sent: %+v", got.Recipients)
		case r.Address == "nobody@remote.test" && r.Done:
			t.Errorf("nobody's failure is recorded, but its DSN was not sent: %+v", got.Recipients)
		}
	}
}
