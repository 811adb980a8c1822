package server

import (
	"net"
	"time"

	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/web"
)

// queueGaugeTTL is how long a queue length read serves scrapes.
const queueGaugeTTL = 5 * time.Second

// wireHTTP returns the HTTP listener (autoconfig, MTA-STS, ACME HTTP-01)
// and the metrics listener. Autoconfig announces the listeners with the
// ports they are actually bound to, and only those that are running.
func (s *Server) wireHTTP() ([]service, []worker, error) {
	h := &web.Server{
		Config:  s.Config,
		Domains: s.Store,
		Logger:  s.Logger.With("listener", "http"),
		ListenerAddr: func(name string) net.Addr {
			return s.Addr(name)
		},
		// ACME HTTP-01 challenges are answered here (a no-op without ACME).
		Wrap: s.Certs.HTTPHandler,
	}
	s.Metrics.Gauge(metrics.QueueLength, web.QueueLengthGauge(s.Store, queueGaugeTTL))
	m := &web.MetricsServer{Registry: s.Metrics, Logger: s.Logger.With("listener", "metrics")}
	return []service{
		{name: "http", addr: s.Config.Listen.HTTP, serve: h.Serve, shutdown: h.Shutdown},
		{name: "metrics", addr: s.Config.Listen.Metrics, serve: m.Serve, shutdown: m.Shutdown},
	}, nil, nil
}
