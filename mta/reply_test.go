package mta

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
)

// TestReplyClientTimeout: a client that stalls in DATA is the client's
// doing, not an internal error: submission logged it at ERROR (P7r of the
// probe), where port 25 said nothing. The reply is 421 4.4.2, which ends
// the session (EndAtTimeout), as on port 25.
func TestReplyClientTimeout(t *testing.T) {
	for _, err := range []error{errClientTimeout, fmt.Errorf("read: %w", os.ErrDeadlineExceeded)} {
		var logs bytes.Buffer
		r := Reply(slog.New(slog.NewTextHandler(&logs, nil)), err)
		if r != errTimeout || strings.Contains(logs.String(), "level=ERROR") {
			t.Errorf("%v: reply %d, logged %q", err, r.Code, logs.String())
		}
	}
}
