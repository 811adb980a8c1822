// Package web is Posthorn's HTTP listener (listen.http) and its metrics
// listener (listen.metrics).
//
// The HTTP listener serves:
//
//   - Thunderbird autoconfig (clientConfig version 1.1) at
//     /mail/config-v1.1.xml, the path Thunderbird asks for on
//     autoconfig.<domain>, and at /.well-known/autoconfig/mail/config-v1.1.xml,
//     the path it asks for on the domain itself.
//   - The MTA-STS policy at /.well-known/mta-sts.txt (RFC 8461 section 3.2).
//   - Whatever Wrap adds in front, which is how ACME HTTP-01 challenges
//     (/.well-known/acme-challenge/) are answered by the certs package.
//
// Implementation notes:
//
//   - Autoconfig lists only listeners that are running, each with the port
//     it is bound to, and only TLS socket types (SSL or STARTTLS): the
//     password is sent as "password-cleartext" inside TLS, never on a plain
//     socket (RFC 8314 section 3 and 4).
//   - The domain comes from the emailaddress query parameter that
//     Thunderbird sends, else from the Host header (autoconfig.<domain> or
//     <domain>); asked on the MX host name without an address, the first
//     domain served answers. A domain we do not serve gets 404.
//   - The MTA-STS policy is "enforce" only when a real certificate is
//     configured (cert_file or ACME); with the self-signed certificate it is
//     "testing", so that senders report instead of refusing (RFC 8461
//     section 5). The policy text and its id come from package zone, so the
//     id published in DNS changes exactly when the policy does.
//   - net/http recovers a panicking handler per connection; every server
//     has header, read, write and idle timeouts so a slow client cannot hold
//     a connection forever.
package web

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/zone"
)

// DomainLister lists the domains served here; store.Store is one.
type DomainLister interface {
	Domains() ([]string, error)
}

// Server is the HTTP listener. Config and Domains are required; the other
// fields have usable zero values.
type Server struct {
	Config  *config.Config
	Domains DomainLister
	Logger  *slog.Logger
	// ListenerAddr returns the bound address of a running listener by its
	// [listen] name ("imaps", "submission"...) or nil when it is not
	// running. Nil: the ports are taken from Config.Listen.
	ListenerAddr func(name string) net.Addr
	// Wrap, if set, wraps the handler; certs uses it to answer ACME
	// HTTP-01 challenges (autocert.Manager.HTTPHandler).
	Wrap func(http.Handler) http.Handler

	mu  sync.Mutex
	srv *http.Server
}

// Handler returns the HTTP handler with every route, wrapped by Wrap.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /mail/config-v1.1.xml", s.serveAutoconfig)
	mux.HandleFunc("GET /.well-known/autoconfig/mail/config-v1.1.xml", s.serveAutoconfig)
	mux.HandleFunc("GET /.well-known/mta-sts.txt", s.serveMTASTS)
	var h http.Handler = mux
	if s.Wrap != nil {
		h = s.Wrap(h)
	}
	return h
}

// Serve answers HTTP requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return serveHTTP(&s.mu, &s.srv, s.Handler(), s.logger(), ln)
}

// Shutdown stops the listener and waits for requests in flight until ctx
// ends.
func (s *Server) Shutdown(ctx context.Context) error {
	return shutdownHTTP(ctx, &s.mu, &s.srv)
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// newHTTPServer returns an http.Server with the timeouts every Posthorn
// HTTP listener uses.
func newHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

func serveHTTP(mu *sync.Mutex, p **http.Server, h http.Handler, logger *slog.Logger, ln net.Listener) error {
	mu.Lock()
	if *p == nil {
		*p = newHTTPServer(h, logger)
	}
	srv := *p
	mu.Unlock()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func shutdownHTTP(ctx context.Context, mu *sync.Mutex, p **http.Server) error {
	mu.Lock()
	srv := *p
	mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Shutdown(ctx)
}

// port returns the port of a listener, 0 when it is off or not running.
func (s *Server) port(name string) int {
	if s.ListenerAddr != nil {
		a := s.ListenerAddr(name)
		if a == nil {
			return 0
		}
		if ta, ok := a.(*net.TCPAddr); ok {
			return ta.Port
		}
		return portOf(a.String())
	}
	return zone.ListenerPort(s.Config, name)
}

func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return 0
	}
	return n
}

// serveMTASTS serves the MTA-STS policy (RFC 8461 section 3.2): a text/plain
// body of "key: value" lines.
func (s *Server) serveMTASTS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=3600")
	_, _ = w.Write([]byte(zone.MTASTSPolicy(s.Config)))
}
