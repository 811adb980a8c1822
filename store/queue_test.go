package store

import (
	"context"
	"testing"
	"time"
)

// TestSetQueueNextAttemptChangesNothingElse: an admin's retry, made from
// a copy read before a worker recorded its attempt, keeps what the
// worker recorded.
func TestSetQueueNextAttemptChangesNothingElse(t *testing.T) {
	s, _ := openTest(t, Options{NoSync: true})
	e, err := s.Enqueue(context.Background(), QueueEntry{From: "alice@example.test",
		Recipients: []QueueRecipient{{Address: "a@remote.test"}, {Address: "b@remote.test"}}}, testMessage("q", 100))
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{e.ID, "missing"} // read by the admin's retry
	worker := e
	worker.Recipients = []QueueRecipient{{Address: "a@remote.test", Done: true}, {Address: "b@remote.test", LastError: "451"}}
	worker.Attempts, worker.DelayNotified = 1, true
	if err := s.UpdateQueueEntry(worker); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(time.Minute).UTC().Round(time.Second)
	n, err := s.SetQueueNextAttempt(ids, at)
	if err != nil || n != 1 {
		t.Fatalf("SetQueueNextAttempt: %d, %v", n, err)
	}
	got, err := s.QueueEntry(e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.NextAttempt.Equal(at) || !got.Recipients[0].Done || got.Recipients[1].LastError != "451" ||
		got.Attempts != 1 || !got.DelayNotified || got.BlobID != e.BlobID {
		t.Fatalf("entry after retry: %+v", got)
	}
}
