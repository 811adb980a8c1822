package outbound

import (
	"context"
	"log/slog"
	"time"
)

// STSFetchBackoff is how long a failed policy fetch is not retried.
const STSFetchBackoff = stsFetchBackoff

// SetClock sets the queue's clock.
func SetClock(q *Queue, now func() time.Time) { q.now = now }

// PolicyMode returns the mode of the MTA-STS policy in force for domain,
// "" for none.
func PolicyMode(q *Queue, domain string) string {
	q.init()
	if p := q.stsPolicy(context.Background(), domain, slog.New(slog.DiscardHandler)); p != nil {
		return p.mode
	}
	return ""
}

// SetWriteTimeout sets the bound on each write to a remote server.
func SetWriteTimeout(q *Queue, d time.Duration) { q.writeTimeout = d }

// Classify is classify: the status, diagnostic and permanence of an error.
var Classify = classify
