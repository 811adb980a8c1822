package metrics

import (
	"bytes"
	"strings"
	"testing"
)

// series returns the series names with labels (without values) of an
// exposition.
func series(t *testing.T, r *Registry) map[string]bool {
	t.Helper()
	var buf bytes.Buffer
	if _, err := r.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	s := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if !strings.HasPrefix(line, "#") {
			s[line[:strings.LastIndexByte(line, ' ')]] = true
		}
	}
	return s
}

// Counting does not make a series disappear: the series whose labels are
// known in advance are written at zero from the start, so the first
// increment shows in rate() and no unlabelled zero series ends when the
// first labelled one appears.
func TestSeriesInitialised(t *testing.T) {
	r := New()
	before := series(t, r)
	for _, want := range []string{
		Accepted + `{via="smtp"}`, Accepted + `{via="submission"}`,
		Delivered + `{to="local"}`, AuthFailures + `{protocol="imap"}`,
		Connections + `{protocol="submission"}`, Rejected, Deferred, QueueLength,
	} {
		if !before[want] {
			t.Errorf("%s not written before it is counted: %v", want, before)
		}
	}
	r.Inc(Accepted, "via", "smtp")
	r.Inc(AuthFailures, "protocol", "pop3")
	r.Inc(Connections, "protocol", "imap")
	r.Inc(Delivered, "to", "remote")
	after := series(t, r)
	for s := range before {
		if !after[s] && s != Rejected {
			t.Errorf("series %s disappeared once counted", s)
		}
	}
}
