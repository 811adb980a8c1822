// Package drain counts the work in progress of a server (an SMTP
// transaction, an IMAP APPEND) so that shutting down lets it finish while
// no new one starts.
package drain

import (
	"context"
	"sync/atomic"
	"time"
)

// Counter counts work in progress. The zero value is ready.
type Counter struct {
	open     atomic.Int64
	draining atomic.Bool
}

// Enter counts one piece of work in, unless Wait has begun: then it
// returns false and counts nothing.
func (c *Counter) Enter() bool {
	// Counted before the check: Wait sets draining before it reads the
	// count, so either it waits for this one or this one sees draining.
	c.open.Add(1)
	if c.draining.Load() {
		c.open.Add(-1)
		return false
	}
	return true
}

// Draining tells whether Wait has begun.
func (c *Counter) Draining() bool { return c.draining.Load() }

// Open is the number of pieces of work in progress.
func (c *Counter) Open() int64 { return c.open.Load() }

// Leave counts one piece of work out.
func (c *Counter) Leave() { c.open.Add(-1) }

// Wait refuses new work and waits until none is in progress, or ctx
// ends.
func (c *Counter) Wait(ctx context.Context) error {
	c.draining.Store(true)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for c.open.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}
