package mta

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"syscall"
	"testing"

	"github.com/emersion/go-smtp"
)

// TestReplyClientGone: a client that closes or resets its connection
// inside DATA, or aborts BDAT, is not an internal error of ours (logged
// at ERROR, the level one alerts on); anything unknown still is.
func TestReplyClientGone(t *testing.T) {
	for _, err := range []error{io.EOF, io.ErrUnexpectedEOF, fmt.Errorf("read: %w", syscall.ECONNRESET), smtp.ErrDataReset} {
		var logs bytes.Buffer
		r := Reply(slog.New(slog.NewTextHandler(&logs, nil)), err)
		if r == nil || r.Code/100 != 4 {
			t.Errorf("%v: reply %v, want a 4xx", err, r)
		}
		if strings.Contains(logs.String(), "level=ERROR") {
			t.Errorf("%v logged as an error: %s", err, logs.String())
		}
	}
	var logs bytes.Buffer
	Reply(slog.New(slog.NewTextHandler(&logs, nil)), errors.New("something of ours broke"))
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "internal error") {
		t.Errorf("an unknown error is not logged as internal: %s", logs.String())
	}
}
