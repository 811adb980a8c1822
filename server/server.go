// Package server wires Posthorn's components together exactly as
// `posthorn serve` runs them: it opens the store, makes the TLS
// configuration, the authenticator, the resolver and the delivery agent,
// and starts one listener per configured address. The test harness uses
// the same code, so end-to-end tests run what users run.
//
// Each component's wiring lives in its own wire_*.go file and returns the
// services it provides; a component that is not built yet returns a service
// without Serve, which is logged as not available instead of pretending to
// work.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/posthorn/posthorn/admin"
	"github.com/posthorn/posthorn/auth"
	"github.com/posthorn/posthorn/certs"
	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/internal/connlimit"
	"github.com/posthorn/posthorn/internal/gctune"
	"github.com/posthorn/posthorn/internal/membudget"
	"github.com/posthorn/posthorn/mda"
	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/resolver"
	"github.com/posthorn/posthorn/store"
)

// service is one listener of one component.
type service struct {
	name        string // "smtp", "imaps"... as in [listen]
	addr        string // from the config; "" is off
	implicitTLS bool
	// serve runs until the listener is closed; nil: not available yet.
	serve    func(net.Listener) error
	shutdown func(context.Context) error
	// wrapConn, if set, wraps each connection the listener accepts,
	// under any implicit TLS (go-smtp must see the *tls.Conn itself).
	wrapConn func(net.Conn) net.Conn
}

// mailListener names the listeners that limits.max_connections and
// limits.max_connections_per_ip count, all together (s.conns), besides
// port 25, whose server takes the same limiter to answer with its own 421.
var mailListener = map[string]bool{
	"submission": true, "submissions": true,
	"imap": true, "imaps": true, "pop3": true, "pop3s": true,
}

// worker is a background task of a component (the outbound queue).
type worker struct {
	name string
	run  func(ctx context.Context) error
}

// Server is a running Posthorn.
type Server struct {
	Config   *config.Config
	Logger   *slog.Logger
	Store    store.Store
	TLS      *tls.Config
	Certs    *certs.Provider
	Auth     *auth.Authenticator
	Resolver *net.Resolver
	MDA      *mda.Agent
	Metrics  *metrics.Registry

	mu        sync.Mutex
	addrs     map[string]net.Addr
	services  []service
	listeners []net.Listener
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	conns     *connlimit.Limiter // the connection caps of every mail listener
	budget    *membudget.Budget  // the bodies being received, by every mail listener
	extra     []func()           // closed on Shutdown after services
	queue     admin.Queue        // the outbound queue, set by wireMSA
}

// New opens the store and builds every component from cfg. The store stays
// open until Shutdown.
func New(cfg *config.Config, logger *slog.Logger) (*Server, error) {
	st, err := store.Open(cfg.DataPath("posthorn.db"), store.Options{
		MaxHeaderFields: cfg.Limits.MaxHeaderFields,
		MaxMIMEDepth:    cfg.Limits.MaxMIMEDepth,
		// Mail is refused (452 4.3.1) while the disk has less than twice
		// the largest message free: the rest stays for expunges.
		MinFree: 2 * cfg.MaxMessageBytes,
	})
	if err != nil {
		return nil, err
	}
	// mta-sts.<domain> names may ask for an ACME certificate too.
	certProvider, err := certs.NewProvider(cfg, logger, certs.WithHostPolicy(func(host string) bool {
		d, ok := strings.CutPrefix(host, "mta-sts.")
		if !ok {
			return false
		}
		served, err := st.HasDomain(d)
		return err == nil && served
	}))
	if err != nil {
		st.Close()
		return nil, err
	}
	s := &Server{
		Config:   cfg,
		Logger:   logger,
		Store:    st,
		TLS:      certProvider.TLS,
		Certs:    certProvider,
		Auth:     auth.New(st, logger),
		Resolver: resolver.New(cfg.Outbound.DNSServer),
		Metrics:  metrics.New(),
		addrs:    map[string]net.Addr{},
	}
	s.MDA = &mda.Agent{Store: st, Logger: logger, Hostname: cfg.Hostname, Metrics: s.Metrics}
	return s, nil
}

// Start binds every configured listener and starts serving. It returns
// once all listeners are bound; a bind error stops everything.
func (s *Server) Start(ctx context.Context) error {
	ctx, s.cancel = context.WithCancel(ctx)
	gctune.Start()
	s.conns = connlimit.New(s.Config.Limits.MaxConnections, s.Config.Limits.MaxConnectionsPerIP)
	inflight := s.Config.Limits.MaxDataInFlight
	if inflight == 0 {
		inflight = membudget.DefaultSize(s.Config.MaxMessageBytes)
	}
	s.budget = membudget.New(inflight)
	s.Metrics.Gauge(metrics.DataInFlight, s.budget.Used)
	var services []service
	var workers []worker
	for _, wire := range []func() ([]service, []worker, error){
		s.wireMTA, s.wireMSA, s.wireIMAP, s.wirePOP3, s.wireHTTP, s.wireControl,
	} {
		sv, wk, err := wire()
		if err != nil {
			s.closeListeners()
			return err
		}
		services = append(services, sv...)
		workers = append(workers, wk...)
	}
	for _, sv := range services {
		if sv.addr == "" {
			continue
		}
		if sv.serve == nil {
			s.Logger.Warn("listener not available in this build", "listener", sv.name, "addr", sv.addr)
			continue
		}
		ln, err := net.Listen("tcp", sv.addr)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen %s on %s: %w", sv.name, sv.addr, err)
		}
		if mailListener[sv.name] {
			ln = s.limitListener(ln, sv)
		}
		if sv.implicitTLS {
			ln = tls.NewListener(ln, s.TLS)
		}
		s.mu.Lock()
		s.addrs[sv.name] = ln.Addr()
		s.listeners = append(s.listeners, ln)
		s.services = append(s.services, sv)
		s.mu.Unlock()
		s.Logger.Info("listening", "listener", sv.name, "addr", ln.Addr().String())
		s.wg.Add(1)
		go func(sv service, ln net.Listener) {
			defer s.wg.Done()
			if err := sv.serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
				s.Logger.Error("listener stopped", "listener", sv.name, "err", err)
			}
		}(sv, ln)
	}
	if err := s.writeAddrs(); err != nil {
		s.Logger.Warn("cannot record listener addresses", "err", err)
	}
	// ACME needs the http listener up to answer HTTP-01; a no-op otherwise.
	workers = append(workers, worker{name: "acme", run: func(ctx context.Context) error {
		if err := s.Certs.Obtain(ctx); err != nil && ctx.Err() == nil {
			s.Logger.Error("ACME certificate not obtained; serving the self-signed one meanwhile", "err", err)
		}
		return nil
	}})
	workers = append(workers, worker{name: "memtrim", run: func(ctx context.Context) error {
		return trimMemory(ctx, s.Store.ReleaseMapped)
	}})
	for _, w := range workers {
		s.wg.Add(1)
		go func(w worker) {
			defer s.wg.Done()
			if err := w.run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				s.Logger.Error("worker stopped", "worker", w.name, "err", err)
			}
		}(w)
	}
	return nil
}

// AddrsFile is the file in data_dir where a running server records the
// addresses its listeners are bound to (JSON: name -> "host:port"), for
// tools and tests that start it with port 0.
const AddrsFile = "listeners.json"

func (s *Server) writeAddrs() error {
	s.mu.Lock()
	m := map[string]string{}
	for k, a := range s.addrs {
		m[k] = a.String()
	}
	s.mu.Unlock()
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	path := s.Config.DataPath(AddrsFile)
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// Addr returns the bound address of a listener ("smtp", "imap"...), or nil.
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[name]
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.listeners = nil
}

// Shutdown stops accepting, lets in-flight work finish until ctx ends, and
// closes the store.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	services := s.services
	s.mu.Unlock()
	// Every listener stops accepting at once, and each service's
	// in-flight work drains meanwhile, all within the one deadline: one
	// slow transaction does not keep the others' listeners open, nor
	// spend their share of the time.
	var (
		errMu sync.Mutex
		errs  []error
		wg    sync.WaitGroup
	)
	for _, sv := range services {
		if sv.shutdown == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sv.shutdown(ctx); err != nil && !errors.Is(err, net.ErrClosed) {
				errMu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", sv.name, err))
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	s.closeListeners()
	if s.cancel != nil {
		s.cancel()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	os.Remove(s.Config.DataPath(AddrsFile))
	for _, f := range s.extra {
		f()
	}
	errs = append(errs, s.Store.Close())
	return errors.Join(errs...)
}
