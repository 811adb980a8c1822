package web

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/posthorn/posthorn/metrics"
	"github.com/posthorn/posthorn/store"
)

// MetricsServer serves /metrics in the Prometheus text format on its own
// listener (listen.metrics), so that it can stay on loopback while the
// autoconfig listener faces the Internet.
type MetricsServer struct {
	Registry *metrics.Registry
	Logger   *slog.Logger

	mu  sync.Mutex
	srv *http.Server
}

// Handler returns the /metrics handler.
func (m *MetricsServer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		if _, err := m.Registry.WriteTo(&buf); err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
		_, _ = w.Write(buf.Bytes())
	})
	return mux
}

// Serve answers on ln until Shutdown.
func (m *MetricsServer) Serve(ln net.Listener) error {
	logger := m.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return serveHTTP(&m.mu, &m.srv, m.Handler(), logger, ln)
}

// Shutdown stops the listener, waiting for scrapes in flight until ctx
// ends.
func (m *MetricsServer) Shutdown(ctx context.Context) error {
	return shutdownHTTP(ctx, &m.mu, &m.srv)
}

// QueueLister lists the outbound queue; store.Store is one.
type QueueLister interface {
	QueueEntries() ([]store.QueueEntry, error)
}

// QueueLengthGauge returns a gauge function for metrics.QueueLength that
// counts the queue's entries, reading the store at most once per ttl so
// that frequent scrapes of a long queue stay cheap. A failed read keeps
// the last value.
func QueueLengthGauge(q QueueLister, ttl time.Duration) func() int64 {
	var (
		mu   sync.Mutex
		last int64
		at   time.Time
	)
	return func() int64 {
		mu.Lock()
		defer mu.Unlock()
		if !at.IsZero() && time.Since(at) < ttl {
			return last
		}
		entries, err := q.QueueEntries()
		if err == nil {
			last = int64(len(entries))
			at = time.Now()
		}
		return last
	}
}
