package outbound_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/mta/outbound"
)

// issued is a server configuration with a certificate for name from ca.
func issued(ca *harness.CA, name string) *tls.Config {
	conf, _, _ := ca.Issue(name)
	return conf
}

// policyServer is the HTTPS server of mta-sts.remote.test, on loopback.
type policyServer struct {
	mu       sync.Mutex
	policy   string
	ctype    string
	status   int
	requests int
	port     int
	delay    time.Duration // before each answer
}

func (p *policyServer) set(policy string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.policy, p.ctype, p.status = policy, "text/plain; charset=utf-8", 200
}

// update changes the server's answers under its lock.
func (p *policyServer) update(f func(p *policyServer)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *policyServer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests
}

func startPolicyServer(t testing.TB, conf *tls.Config) *policyServer {
	p := &policyServer{}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.mu.Lock()
			p.requests++
			policy, ctype, status, delay := p.policy, p.ctype, p.status, p.delay
			p.mu.Unlock()
			time.Sleep(delay)
			if r.URL.Path != "/.well-known/mta-sts.txt" || r.Host != fmt.Sprintf("mta-sts.remote.test:%d", p.port) {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", ctype)
			w.WriteHeader(status)
			fmt.Fprint(w, policy)
		}),
		TLSConfig: conf,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.port = ln.Addr().(*net.TCPAddr).Port
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return p
}

// stsEnv is a queue that trusts a test CA, a fake MX for remote.test
// whose certificate comes from mxConf, and remote.test's policy server
// (policy not published until set, TXT record not until record).
type stsEnv struct {
	*queueEnv
	f      *fakeMX
	policy *policyServer
	ca     *harness.CA
}

func newSTSEnv(t *testing.T, mxConf func(ca *harness.CA) *tls.Config) *stsEnv {
	ca := harness.NewCA(t)
	f := startFakeMXTLS(t, nil, mxConf(ca))
	e := newQueueEnv(t, f.port())
	e.Q.TLS = &tls.Config{RootCAs: ca.Pool}
	p := startPolicyServer(t, issued(ca, "mta-sts.remote.test"))
	e.Q.STSPort = p.port
	e.mx(t, "remote.test")
	e.DNS.Add(t, "mta-sts.remote.test. 300 IN A 127.0.0.1")
	return &stsEnv{queueEnv: e, f: f, policy: p, ca: ca}
}

func (e *stsEnv) record(t *testing.T, id string) {
	e.DNS.Add(t, `_mta-sts.remote.test. 300 IN TXT "v=STSv1; id=`+id+`;"`)
}

func enforce(mx string) string {
	return "version: STSv1\r\nmode: enforce\r\nmx: " + mx + "\r\nmax_age: 86400\r\n"
}

// deferredWith waits until the only queue entry's recipient has failed
// an attempt with an error containing want, and checks that nothing
// reached the fake MX.
func (e *stsEnv) deferredWith(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		es, err := e.St.QueueEntries()
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			t.Fatal("the queue is empty: delivered although the policy forbids it")
		}
		if len(es) == 1 && len(es[0].Recipients) == 1 {
			r := es[0].Recipients[0]
			last = r.LastError
			if r.Done {
				t.Fatalf("recipient done (failed %v): %s", r.Failed, r.LastError)
			}
			if strings.Contains(r.LastError, want) {
				select {
				case got := <-e.f.ch:
					t.Fatalf("delivered although the policy forbids it (TLS %v)", got.TLS)
				default:
				}
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("recipient not deferred with %q; last error %q", want, last)
}

// TestMTASTSEnforce: a domain whose policy enforces gets its mail over
// TLS verified for the MX name, and only then.
func TestMTASTSEnforce(t *testing.T) {
	for _, mx := range []string{"mx.remote.test", "*.remote.test"} {
		t.Run("verified "+mx, func(t *testing.T) {
			e := newSTSEnv(t, func(ca *harness.CA) *tls.Config { return issued(ca, "mx.remote.test") })
			e.policy.set(enforce(mx))
			e.record(t, "20261127a")
			e.run(t)
			e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test")
			if got := e.f.wait(t); !got.TLS {
				t.Fatal("delivered without TLS under an enforced policy")
			}
			e.waitEmpty(t)
			if e.policy.count() != 1 {
				t.Errorf("%d policy fetches, want 1", e.policy.count())
			}
		})
	}
	for _, tc := range []struct {
		name   string
		mxConf func(ca *harness.CA) *tls.Config
		mx     string // in the policy
		want   string // in the error the recipient is deferred with
	}{
		{"untrusted-certificate", func(*harness.CA) *tls.Config { return selfSigned(t, "mx.remote.test") }, "mx.remote.test", "MTA-STS"},
		{"certificate-for-another-name", func(ca *harness.CA) *tls.Config { return issued(ca, "other.remote.test") }, "mx.remote.test", "MTA-STS"},
		{"no-starttls", func(*harness.CA) *tls.Config { return nil }, "mx.remote.test", "STARTTLS not offered"},
		{"mx-not-in-policy", func(ca *harness.CA) *tls.Config { return issued(ca, "mx.remote.test") }, "mx.elsewhere.test", "matches its MTA-STS policy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newSTSEnv(t, tc.mxConf)
			e.policy.set(enforce(tc.mx))
			e.record(t, "1")
			e.run(t)
			e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test")
			e.deferredWith(t, tc.want)
		})
	}
}

// TestMTASTSNoPooledShortcut: a connection kept from an opportunistic
// delivery (certificate unverified) is not reused for a domain once its
// policy enforces TLS.
func TestMTASTSNoPooledShortcut(t *testing.T) {
	e := newSTSEnv(t, func(*harness.CA) *tls.Config { return selfSigned(t, "mx.remote.test") })
	e.run(t)
	e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test")
	e.f.wait(t)
	e.waitEmpty(t) // its connection is kept for poolIdle
	e.policy.set(enforce("mx.remote.test"))
	e.record(t, "1")
	e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test")
	e.deferredWith(t, "MTA-STS")
}

// TestMTASTSNotEnforced: testing mode, no record, and a policy that cannot
// be fetched all leave delivery opportunistic.
func TestMTASTSNotEnforced(t *testing.T) {
	bad := func(*harness.CA) *tls.Config { return selfSigned(t, "mx.remote.test") }
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, e *stsEnv)
	}{
		{"testing-mode", func(t *testing.T, e *stsEnv) {
			e.policy.set("version: STSv1\nmode: testing\nmx: mx.remote.test\nmax_age: 600\n")
			e.record(t, "1")
		}},
		{"no-record", func(t *testing.T, e *stsEnv) {
			e.policy.set(enforce("mx.remote.test"))
		}},
		{"policy-not-found", func(t *testing.T, e *stsEnv) {
			e.record(t, "1")
		}},
		{"not-text-plain", func(t *testing.T, e *stsEnv) {
			e.policy.set(enforce("mx.remote.test"))
			e.policy.update(func(p *policyServer) { p.ctype = "text/html" })
			e.record(t, "1")
		}},
		{"invalid-policy", func(t *testing.T, e *stsEnv) {
			e.policy.set("version: STSv1\nmode: enforce\nmax_age: 600\n") // no mx
			e.record(t, "1")
		}},
		{"two-records", func(t *testing.T, e *stsEnv) {
			e.policy.set(enforce("mx.remote.test"))
			e.record(t, "1")
			e.record(t, "2")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newSTSEnv(t, bad)
			e.policy.update(func(p *policyServer) { p.status = 404 })
			tc.setup(t, e)
			e.run(t)
			e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test")
			if got := e.f.wait(t); !got.TLS {
				t.Error("opportunistic delivery did not use the offered STARTTLS")
			}
			e.waitEmpty(t)
		})
	}
}

// TestMTASTSCache: a policy is fetched once per id, and stays in force
// when its record goes away (RFC 8461 section 5.1); a new id fetches it
// again.
func TestMTASTSCache(t *testing.T) {
	e := newSTSEnv(t, func(ca *harness.CA) *tls.Config { return issued(ca, "mx.remote.test") })
	e.policy.set(enforce("mx.remote.test"))
	e.record(t, "a1")
	e.run(t)
	for range 2 {
		e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test")
		e.f.wait(t)
		e.waitEmpty(t)
	}
	if n := e.policy.count(); n != 1 {
		t.Fatalf("%d policy fetches for one id, want 1", n)
	}
	// The record goes, and the MX record now names a host the policy
	// does not: the cached policy still forbids delivery.
	e.DNS.Remove("_mta-sts.remote.test.", 16)
	e.policy.set("") // nothing to fetch either
	e.DNS.Remove("remote.test.", 15)
	e.DNS.Add(t, "remote.test. 300 IN MX 10 mx2.remote.test.", "mx2.remote.test. 300 IN A 127.0.0.1")
	e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test")
	e.deferredWith(t, "matches its MTA-STS policy")
	// A new id: the policy, now in testing mode, is fetched and the mail
	// goes.
	e.policy.set("version: STSv1\nmode: testing\nmx: mx.remote.test\nmax_age: 600\n")
	e.record(t, "a2")
	e.Q.Retry("")
	e.f.wait(t)
	e.waitEmpty(t)
	if n := e.policy.count(); n != 2 {
		t.Errorf("%d policy fetches, want 2", n)
	}
}

// TestMTASTSPolicySurvivesRestart: the policy a queue fetched is in the
// store, and a new queue on the same store (a restart) enforces it while
// the record is gone and the policy cannot be fetched.
func TestMTASTSPolicySurvivesRestart(t *testing.T) {
	e := newSTSEnv(t, func(ca *harness.CA) *tls.Config { return issued(ca, "mx.remote.test") })
	e.policy.set(enforce("mx.remote.test"))
	e.record(t, "r1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Q.Run(ctx); close(done) }()
	e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test")
	e.f.wait(t)
	e.waitEmpty(t)
	cancel()
	<-done

	old := e.Q
	e.Q = &outbound.Queue{
		Store: old.Store, Resolver: old.Resolver, Hostname: old.Hostname, MXPort: old.MXPort, STSPort: old.STSPort,
		RetryInitial: old.RetryInitial, RetryMax: old.RetryMax, GiveUpAfter: old.GiveUpAfter, DelayNotice: old.DelayNotice,
		Workers: old.Workers, TLS: old.TLS, MDA: old.MDA, Logger: old.Logger, Metrics: old.Metrics,
	}
	e.DNS.Remove("_mta-sts.remote.test.", 16)
	e.policy.update(func(p *policyServer) { p.status = 404 })
	e.DNS.Remove("remote.test.", 15)
	e.DNS.Add(t, "remote.test. 300 IN MX 10 mx2.remote.test.", "mx2.remote.test. 300 IN A 127.0.0.1")
	e.run(t)
	e.enqueue(t, "alice@local.test", "alice@local.test", "bob@remote.test")
	e.deferredWith(t, "matches its MTA-STS policy")
	if n := e.policy.count(); n != 1 {
		t.Errorf("%d policy fetches, want 1", n)
	}
}

// TestMTASTSFetchOnce: the deliveries to a domain share one policy fetch
// while it runs, and a fetch that failed is not tried again for the same
// record id until stsFetchBackoff has passed; a new id is fetched at once.
func TestMTASTSFetchOnce(t *testing.T) {
	e := newSTSEnv(t, func(ca *harness.CA) *tls.Config { return issued(ca, "mx.remote.test") })
	var mu sync.Mutex
	now := time.Now()
	outbound.SetClock(e.Q, func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	e.record(t, "f1")

	// Eight deliveries at once while the policy server is slow: one fetch.
	e.policy.set(enforce("mx.remote.test"))
	e.policy.update(func(p *policyServer) { p.delay = 200 * time.Millisecond })
	modes := make(chan string, 8)
	for range 8 {
		go func() { modes <- outbound.PolicyMode(e.Q, "remote.test") }()
	}
	for range 8 {
		if m := <-modes; m != "enforce" {
			t.Fatalf("a delivery waiting for the fetch got mode %q, want enforce", m)
		}
	}
	if n := e.policy.count(); n != 1 {
		t.Fatalf("%d fetches for eight deliveries at once, want 1", n)
	}

	// A new id whose policy cannot be fetched: the cached policy stays,
	// and the failure is not retried within the backoff.
	e.policy.update(func(p *policyServer) { p.status, p.delay = 500, 0 })
	e.DNS.Remove("_mta-sts.remote.test.", 16)
	e.record(t, "f2")
	for range 3 {
		if m := outbound.PolicyMode(e.Q, "remote.test"); m != "enforce" {
			t.Fatalf("mode %q after a failed fetch, want the cached enforce", m)
		}
	}
	if n := e.policy.count(); n != 2 {
		t.Fatalf("%d fetches after three deliveries with a failing policy host, want 2", n)
	}
	advance(outbound.STSFetchBackoff + time.Second)
	outbound.PolicyMode(e.Q, "remote.test")
	if n := e.policy.count(); n != 3 {
		t.Fatalf("%d fetches once the backoff passed, want 3", n)
	}
	// A new id is fetched at once, failure or not.
	e.policy.set("version: STSv1\nmode: testing\nmx: mx.remote.test\nmax_age: 600\n")
	e.DNS.Remove("_mta-sts.remote.test.", 16)
	e.record(t, "f3")
	if m := outbound.PolicyMode(e.Q, "remote.test"); m != "testing" {
		t.Fatalf("mode %q for a new id, want testing", m)
	}
	if n := e.policy.count(); n != 4 {
		t.Fatalf("%d fetches, want 4", n)
	}
}
