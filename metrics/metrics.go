// Package metrics keeps Posthorn's counters and gauges and writes them in
// the Prometheus text exposition format. A nil *Registry is valid and
// records nothing, so components can take one as an optional field.
package metrics

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Names used by the components.
const (
	Accepted     = "posthorn_messages_accepted_total"  // label: via=smtp|submission
	Rejected     = "posthorn_messages_rejected_total"  // label: via, reason
	Delivered    = "posthorn_messages_delivered_total" // label: to=local|remote
	Deferred     = "posthorn_messages_deferred_total"
	Bounced      = "posthorn_messages_bounced_total"
	AuthFailures = "posthorn_auth_failures_total"  // label: protocol
	QueueLength  = "posthorn_queue_length"         // gauge
	Connections  = "posthorn_connections_open"     // gauge, label: protocol
	DataInFlight = "posthorn_data_in_flight_bytes" // gauge
)

var help = map[string]string{
	Accepted:     "Messages accepted with a 250 reply.",
	Rejected:     "Messages or recipients refused.",
	Delivered:    "Messages delivered to a mailbox or a remote server.",
	Deferred:     "Outbound delivery attempts that will be retried.",
	Bounced:      "Outbound messages that produced a bounce.",
	AuthFailures: "Failed logins.",
	QueueLength:  "Entries in the outbound queue.",
	Connections:  "Open client connections.",
	DataInFlight: "Bytes held by the message bodies being received (SMTP, submission, IMAP APPEND), against limits.max_data_in_flight.",
}

// initial lists, for the names whose label values are known in advance,
// the series written at zero before anything counts them: a series that
// first appears at 1 hides its first increment from rate() and
// increase(), and an unlabelled zero that disappears once a labelled
// series exists looks to Prometheus like a series that ended
// (https://prometheus.io/docs/practices/instrumentation/#avoid-missing-metrics).
// Names not listed here are written unlabelled at zero until counted.
var initial = map[string][][]string{
	Accepted:     {{"via", "smtp"}, {"via", "submission"}},
	Delivered:    {{"to", "local"}, {"to", "remote"}},
	AuthFailures: {{"protocol", "imap"}, {"protocol", "pop3"}, {"protocol", "smtp"}},
	Connections:  {{"protocol", "imap"}, {"protocol", "pop3"}, {"protocol", "smtp"}, {"protocol", "submission"}},
}

// Registry holds every series.
type Registry struct {
	mu     sync.Mutex
	series map[string]*atomic.Int64 // key: name{labels}
	gauges map[string]func() int64
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{series: map[string]*atomic.Int64{}, gauges: map[string]func() int64{}}
}

func key(name string, labels []string) string {
	if len(labels) == 0 {
		return name
	}
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i := 0; i+1 < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", labels[i], labels[i+1])
	}
	b.WriteByte('}')
	return b.String()
}

func (r *Registry) get(name string, labels []string) *atomic.Int64 {
	k := key(name, labels)
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.series[k]
	if !ok {
		v = new(atomic.Int64)
		r.series[k] = v
	}
	return v
}

// Add adds n to a series; labels are name, value pairs.
func (r *Registry) Add(name string, n int64, labels ...string) {
	if r == nil {
		return
	}
	r.get(name, labels).Add(n)
}

// Inc adds one to a series.
func (r *Registry) Inc(name string, labels ...string) { r.Add(name, 1, labels...) }

// Dec subtracts one (for gauges such as open connections).
func (r *Registry) Dec(name string, labels ...string) { r.Add(name, -1, labels...) }

// Gauge registers a function read at every scrape.
func (r *Registry) Gauge(name string, f func() int64, labels ...string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gauges[key(name, labels)] = f
}

// Value returns the current value of a series (tests).
func (r *Registry) Value(name string, labels ...string) int64 {
	if r == nil {
		return 0
	}
	k := key(name, labels)
	r.mu.Lock()
	v, ok := r.series[k]
	f := r.gauges[k]
	r.mu.Unlock()
	if f != nil {
		return f()
	}
	if !ok {
		return 0
	}
	return v.Load()
}

// WriteTo writes every series in the Prometheus text format.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	values := map[string]int64{}
	for k, v := range r.series {
		values[k] = v.Load()
	}
	gauges := map[string]func() int64{}
	for k, f := range r.gauges {
		gauges[k] = f
	}
	r.mu.Unlock()
	for k, f := range gauges {
		values[k] = f()
	}
	for name, sets := range initial {
		for _, labels := range sets {
			k := key(name, labels)
			if _, ok := values[k]; !ok {
				values[k] = 0
			}
		}
	}
	for name := range help { // every known name appears, even at zero
		found := false
		for k := range values {
			if k == name || strings.HasPrefix(k, name+"{") {
				found = true
				break
			}
		}
		if !found {
			values[name] = 0
		}
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var n int64
	last := ""
	for _, k := range keys {
		name, _, _ := strings.Cut(k, "{")
		if name != last {
			typ := "counter"
			if !strings.HasSuffix(name, "_total") {
				typ = "gauge"
			}
			m, err := fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help[name], name, typ)
			n += int64(m)
			if err != nil {
				return n, err
			}
			last = name
		}
		m, err := fmt.Fprintf(w, "%s %d\n", k, values[k])
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
