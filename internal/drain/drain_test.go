package drain

import (
	"context"
	"testing"
	"time"
)

// TestCounter: Wait waits for the work entered before it, refuses work
// after it, and gives up when its context ends.
func TestCounter(t *testing.T) {
	var c Counter
	if !c.Enter() {
		t.Fatal("Enter refused before Wait")
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait(context.Background()) }()
	for deadline := time.Now().Add(5 * time.Second); !c.draining.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Wait did not start")
		}
	}
	if c.Enter() {
		t.Error("Enter accepted during Wait")
	}
	select {
	case err := <-done:
		t.Fatalf("Wait returned (%v) with work in progress", err)
	case <-time.After(50 * time.Millisecond):
	}
	c.Leave()
	if err := <-done; err != nil {
		t.Errorf("Wait: %v", err)
	}
	var stuck Counter
	stuck.Enter()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := stuck.Wait(ctx); err == nil {
		t.Error("Wait returned nil with work still in progress")
	}
}
