package store

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// TestSTSPolicies: a policy is stored per domain (lower case), replaced
// by the next, kept across a reopen, and dropped once expired when
// another is stored.
func TestSTSPolicies(t *testing.T) {
	s, path := openTest(t, Options{})
	if _, err := s.STSPolicy("remote.test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no policy yet: %v", err)
	}
	soon := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	p := STSPolicy{Domain: "Remote.Test.", ID: "a1", Mode: "enforce", MX: []string{"mx.remote.test", "*.mx.remote.test"}, Expires: soon}
	if err := s.PutSTSPolicy(p); err != nil {
		t.Fatal(err)
	}
	p.Domain = "remote.test"
	if got, err := s.STSPolicy("REMOTE.test"); err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("got %+v %v, want %+v", got, err, p)
	}
	p.ID, p.Mode = "a2", "testing"
	if err := s.PutSTSPolicy(p); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSTSPolicy(STSPolicy{Domain: "old.test", ID: "x", Mode: "enforce", MX: []string{"mx.old.test"}, Expires: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSTSPolicy(STSPolicy{}); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("policy without a domain: %v", err)
	}
	s.Close()
	st, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got, err := st.STSPolicy("remote.test"); err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("after reopen: %+v %v, want %+v", got, err, p)
	}
	// Storing another drops the expired one.
	if _, err := st.STSPolicy("old.test"); err != nil {
		t.Fatalf("expired policy gone too early: %v", err)
	}
	if err := st.PutSTSPolicy(STSPolicy{Domain: "new.test", ID: "n", Mode: "none", Expires: soon}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.STSPolicy("old.test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired policy kept: %v", err)
	}
}
