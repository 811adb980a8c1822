package crash

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/harness"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildPath != "" && os.Getenv(inNamespace) == "" { // the binary is the parent's
		os.RemoveAll(filepath.Dir(buildPath))
	}
	os.Exit(code)
}

// setup builds the binary, starts the loopback DNS and test MX, writes
// the configuration and creates the domain and accounts offline.
func setup(t *testing.T) (*proc, *testMX) {
	t.Helper()
	dns := harness.StartDNS(t)
	dns.Add(t, "remote.test. 300 IN MX 10 mx.remote.test.", "mx.remote.test. 300 IN A 127.0.0.1")
	mx := startMX(t)
	dir := t.TempDir()
	p := newProc(t, writeConfig(t, dir, dns.Addr, mx.Port))
	p.cli("", "domain", "add", "example.test")
	for _, u := range localUsers {
		p.cli(password+"\n", "user", "add", "--password-stdin", u)
	}
	return p, mx
}

// killer kills and restarts the server `kills` times, the k-th time once
// about k/(kills+1) of total messages are acknowledged, plus a random
// delay up to maxDelay. It returns when done is closed or all kills are
// done.
func killer(t *testing.T, p *proc, progress func() int64, total, kills int, maxDelay time.Duration, done <-chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 8))
	for k := 1; k <= kills; k++ {
		threshold := int64(total * k / (kills + 1))
		for progress() < threshold {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
		select {
		case <-done:
			return
		case <-time.After(time.Duration(rng.Int64N(int64(maxDelay) + 1))):
		}
		p.kill()
		t0 := time.Now()
		p.start()
		if d := time.Since(t0); d > time.Second {
			t.Logf("restart %d took %v", k, d.Round(time.Millisecond))
		}
	}
}

// TestCrashSIGKILL sends mail over port 25 (local recipients) and over
// submission (remote recipients, through the queue) while the server is
// killed with SIGKILL and restarted; every message that got a 250 must be
// in a mailbox or at the remote MX afterwards.
func TestCrashSIGKILL(t *testing.T) {
	n := envInt("POSTHORN_CRASH_N", 300)
	kills := envInt("POSTHORN_CRASH_KILLS", 6)
	workers := envInt("POSTHORN_CRASH_WORKERS", 8)
	p, mx := setup(t)
	p.start()
	remote := p.addr("submission") != ""
	if !remote {
		t.Log("NOTE: no submission listener in this build: only port 25 (local delivery) is tested")
	}

	rng := rand.New(rand.NewPCG(1, 2))
	msgs := make([]outMsg, n)
	for i := range msgs {
		msgs[i] = newMessage(i, remote && i%2 == 1, rng)
	}
	l := newLedger()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		killer(t, p, l.acked.Load, n, kills, 50*time.Millisecond, done)
	}()
	start := time.Now()
	err := drive(p, msgs, workers, l, time.Now().Add(time.Duration(n)*50*time.Millisecond+2*time.Minute))
	close(done)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	sendTime := time.Since(start)
	ackedRemote := ackedOf(msgs, l, true)
	if missing := mx.waitAll(ackedRemote, 2*time.Minute); len(missing) > 0 {
		t.Errorf("%d acknowledged remote messages never reached the MX in 2 min, e.g. %v", len(missing), first(missing, 5))
	}
	p.stop()
	local := mailboxCounts(t, p.dataDir)
	tl := check(msgs, l, local, mx)
	report(t, "port 25 + submission", n, p.kills, sendTime, l, tl)
	if fi, err := os.Stat(filepath.Join(p.dataDir, "posthorn.db")); err == nil {
		t.Logf("data file after the run: %.1f MiB for %.1f MiB of messages", float64(fi.Size())/(1<<20), float64(totalBytes(msgs))/(1<<20))
	}
}

// TestCrashDuringOutbound queues remote mail, then kills the server while
// the queue is delivering it to a slow MX; every queued message must
// reach the MX at least once.
func TestCrashDuringOutbound(t *testing.T) {
	n := envInt("POSTHORN_CRASH_OUTBOUND_N", 60)
	kills := envInt("POSTHORN_CRASH_OUTBOUND_KILLS", 4)
	p, mx := setup(t)
	mx.Delay = 30 * time.Millisecond
	p.start()
	if p.addr("submission") == "" {
		t.Skip("no submission listener in this build")
	}

	rng := rand.New(rand.NewPCG(3, 4))
	msgs := make([]outMsg, n)
	ids := make([]string, n)
	for i := range msgs {
		msgs[i] = newMessage(i, true, rng)
		ids[i] = msgs[i].ID
	}
	l := newLedger()
	start := time.Now()
	if err := drive(p, msgs, 8, l, time.Now().Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Kill while deliveries are in flight: each kill waits for the MX to
	// have received about k/(kills+1) of the messages.
	received := func() int64 {
		mx.mu.Lock()
		defer mx.mu.Unlock()
		return int64(mx.total)
	}
	killer(t, p, received, n, kills, 2*mx.Delay, nil)
	if missing := mx.waitAll(ackedOf(msgs, l, true), 2*time.Minute); len(missing) > 0 {
		t.Errorf("%d queued messages never reached the MX in 2 min, e.g. %v", len(missing), first(missing, 5))
	}
	sendTime := time.Since(start)
	p.stop()
	tl := check(msgs, l, nil, mx)
	report(t, "kills during outbound delivery", n, p.kills, sendTime, l, tl)
}

func ackedOf(msgs []outMsg, l *ledger, remote bool) []string {
	var ids []string
	for _, m := range msgs {
		if m.Remote == remote && l.ok[m.ID] > 0 {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

func totalBytes(msgs []outMsg) int64 {
	var n int64
	for _, m := range msgs {
		n += int64(len(m.Body) * len(m.To))
	}
	return n
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

func report(t *testing.T, what string, n, kills int, d time.Duration, l *ledger, tl tally) {
	t.Helper()
	line := fmt.Sprintf("%s: N=%d kills=%d acked=%d lost=%d duplicates=%d attempts=%d refused=%d in %v",
		what, n, kills, tl.Acked, tl.Lost, tl.Duplicates, l.attempts.Load(), len(l.perm), d.Round(time.Millisecond))
	t.Log(line)
	if path := os.Getenv("POSTHORN_CRASH_REPORT"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintln(f, line)
			f.Close()
		}
	}
	if len(l.perm) > 0 {
		t.Errorf("%d messages refused permanently (5xx) during the run, e.g. %v", len(l.perm), first(l.perm, 3))
	}
	if tl.Lost > 0 {
		t.Errorf("LOST %d acknowledged messages, e.g. %v", tl.Lost, first(tl.LostIDs, 10))
	}
}
