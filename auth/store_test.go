package auth

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/posthorn/posthorn/store"
)

// TestAuthenticateRealStore runs Authenticate against the bbolt store.
func TestAuthenticateRealStore(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "posthorn.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.AddDomain("example.test"); err != nil {
		t.Fatal(err)
	}
	h, _ := HashPasswordParams("s3cret", TestParams)
	if err := st.AddAccount("alice@example.test", h); err != nil {
		t.Fatal(err)
	}
	a := New(st, nil)
	a.Limiter, _ = newTestLimiter()
	ctx := context.Background()
	if got, err := a.Authenticate(ctx, client, "ALICE@example.test", "s3cret"); err != nil || got != "alice@example.test" {
		t.Fatalf("login: %q, %v", got, err)
	}
	for _, c := range []struct{ user, pw string }{
		{"alice@example.test", "wrong"},
		{"bob@example.test", "s3cret"},     // no such account
		{"alice@elsewhere.test", "s3cret"}, // no such domain
		{"not an address", "s3cret"},
		{"", ""},
		{"@", "x"},
	} {
		if _, err := a.Authenticate(ctx, client, c.user, c.pw); !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("%s/%s: %v, want ErrInvalidCredentials", c.user, c.pw, err)
		}
	}
	// A password change takes effect at once.
	h2, _ := HashPasswordParams("new pass", TestParams)
	if err := st.SetPasswordHash("alice@example.test", h2); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, client, "alice@example.test", "s3cret"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("old password after change: %v", err)
	}
	if _, err := a.Authenticate(ctx, client, "alice@example.test", "new pass"); err != nil {
		t.Fatalf("new password: %v", err)
	}
}
