package server

import (
	"time"

	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/web"
)

// queueGaugeTTL is how long a queue length read serves scrapes.
const queueGaugeTTL = 5 * time.Second

// wireHTTP returns the HTTP listener (autoconfig, MTA-STS, ACME HTTP-01),
// the same over TLS (https: senders fetch the MTA-STS policy only there,
// RFC 8461 section 3.3), and the metrics listener. Autoconfig announces
// the listeners with the ports they are actually bound to, and only those
// that are running.
func (s *Server) wireHTTP() ([]service, []worker, error) {
	newWeb := func(name string) *web.Server {
		return &web.Server{
			Config:       s.Config,
			Domains:      s.Store,
			Logger:       s.Logger.With("listener", name),
			ListenerAddr: s.Addr,
			// ACME HTTP-01 challenges are answered here (a no-op without ACME).
			Wrap: s.Certs.HTTPHandler,
		}
	}
	h, hs := newWeb("http"), newWeb("https")
	s.Metrics.Gauge(metrics.QueueLength, web.QueueLengthGauge(s.Store, queueGaugeTTL))
	m := &web.MetricsServer{Registry: s.Metrics, Logger: s.Logger.With("listener", "metrics")}
	return []service{
		{name: "http", addr: s.Config.Listen.HTTP, serve: h.Serve, shutdown: h.Shutdown},
		{name: "https", addr: s.Config.Listen.HTTPS, implicitTLS: true, serve: hs.Serve, shutdown: hs.Shutdown},
		{name: "metrics", addr: s.Config.Listen.Metrics, serve: m.Serve, shutdown: m.Shutdown},
	}, nil, nil
}
