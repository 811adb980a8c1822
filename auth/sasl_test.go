package auth

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"

	"github.com/posthorn/posthorn/store"
)

func saslAuth(t *testing.T) *Authenticator {
	t.Helper()
	a := New(newFake(t, TestParams, map[string]string{"alice@example.test": "s3cret"}), nil)
	a.Limiter, _ = newTestLimiter()
	return a
}

// run drives a server with a client's responses and returns the
// challenges it sent, the account done got, and the final error.
func run(srv sasl.Server, responses ...[]byte) (challenges []string, err error) {
	for _, r := range responses {
		ch, done, err := srv.Next(r)
		if err != nil {
			return challenges, err
		}
		if done {
			return challenges, nil
		}
		challenges = append(challenges, string(ch))
	}
	return challenges, errors.New("not done after all responses")
}

func TestPlainServer(t *testing.T) {
	a := saslAuth(t)
	cases := []struct {
		name      string
		responses [][]byte
		account   string
		err       error
		chals     []string
	}{
		{"initial response", [][]byte{[]byte("\x00alice@example.test\x00s3cret")}, "alice@example.test", nil, nil},
		{"no initial response", [][]byte{nil, []byte("\x00alice@example.test\x00s3cret")}, "alice@example.test", nil, []string{""}},
		{"authzid equal", [][]byte{[]byte("Alice@example.test\x00alice@EXAMPLE.test\x00s3cret")}, "alice@example.test", nil, nil},
		{"authzid other user", [][]byte{[]byte("bob@example.test\x00alice@example.test\x00s3cret")}, "", ErrInvalidCredentials, nil},
		{"wrong password", [][]byte{[]byte("\x00alice@example.test\x00nope")}, "", ErrInvalidCredentials, nil},
		{"unknown user", [][]byte{[]byte("\x00bob@example.test\x00s3cret")}, "", ErrInvalidCredentials, nil},
		{"two fields", [][]byte{[]byte("alice@example.test\x00s3cret")}, "", ErrMalformed, nil},
		{"four fields", [][]byte{[]byte("\x00alice@example.test\x00s3cret\x00")}, "", ErrMalformed, nil},
		{"empty authcid", [][]byte{[]byte("\x00\x00s3cret")}, "", ErrMalformed, nil},
		{"empty password", [][]byte{[]byte("\x00alice@example.test\x00")}, "", ErrMalformed, nil},
		{"empty response", [][]byte{{}}, "", ErrMalformed, nil},
		{"huge field", [][]byte{[]byte("\x00alice@example.test\x00" + strings.Repeat("p", 5000))}, "", ErrMalformed, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ""
			srv := a.PlainServer(client, func(acct string) { got = acct })
			chals, err := run(srv, c.responses...)
			if !errors.Is(err, c.err) || (c.err == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if got != c.account {
				t.Fatalf("done(%q), want %q", got, c.account)
			}
			if strings.Join(chals, "|") != strings.Join(c.chals, "|") {
				t.Fatalf("challenges %q, want %q", chals, c.chals)
			}
			// Nothing more is accepted once finished.
			if _, _, err := srv.Next([]byte("\x00alice@example.test\x00s3cret")); err == nil {
				t.Fatal("response after the end accepted")
			}
		})
	}
}

func TestLoginServer(t *testing.T) {
	a := saslAuth(t)
	cases := []struct {
		name      string
		responses [][]byte
		account   string
		err       error
		chals     []string
	}{
		{"challenges", [][]byte{nil, []byte("alice@example.test"), []byte("s3cret")}, "alice@example.test", nil, []string{"Username:", "Password:"}},
		{"initial response", [][]byte{[]byte("alice@example.test"), []byte("s3cret")}, "alice@example.test", nil, []string{"Password:"}},
		{"wrong password", [][]byte{nil, []byte("alice@example.test"), []byte("x")}, "", ErrInvalidCredentials, []string{"Username:", "Password:"}},
		{"empty username", [][]byte{nil, {}}, "", ErrMalformed, []string{"Username:"}},
		{"empty password", [][]byte{nil, []byte("alice@example.test"), {}}, "", ErrMalformed, []string{"Username:", "Password:"}},
		{"NUL in username", [][]byte{[]byte("alice\x00@example.test")}, "", ErrMalformed, nil},
		{"huge password", [][]byte{nil, []byte("alice@example.test"), bytes.Repeat([]byte("p"), 5000)}, "", ErrMalformed, []string{"Username:", "Password:"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ""
			srv := a.LoginServer(client, func(acct string) { got = acct })
			chals, err := run(srv, c.responses...)
			if !errors.Is(err, c.err) || (c.err == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if got != c.account {
				t.Fatalf("done(%q), want %q", got, c.account)
			}
			if strings.Join(chals, "|") != strings.Join(c.chals, "|") {
				t.Fatalf("challenges %q, want %q", chals, c.chals)
			}
			if _, _, err := srv.Next([]byte("s3cret")); err == nil {
				t.Fatal("response after the end accepted")
			}
		})
	}
}

// TestSASLWithGoSASLClients runs go-sasl's own clients (the ones go-smtp
// and go-imap clients use) against the servers.
func TestSASLWithGoSASLClients(t *testing.T) {
	a := saslAuth(t)
	for _, c := range []struct {
		cl  sasl.Client
		srv func(func(string)) sasl.Server
	}{
		{sasl.NewPlainClient("", "alice@example.test", "s3cret"), func(d func(string)) sasl.Server { return a.PlainServer(client, d) }},
		{sasl.NewLoginClient("alice@example.test", "s3cret"), func(d func(string)) sasl.Server { return a.LoginServer(client, d) }},
	} {
		got := ""
		srv := c.srv(func(acct string) { got = acct })
		mech, resp, err := c.cl.Start()
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			chal, done, err := srv.Next(resp)
			if err != nil {
				t.Fatalf("%s: %v", mech, err)
			}
			if done {
				break
			}
			if i > 3 {
				t.Fatalf("%s: no end", mech)
			}
			if resp, err = c.cl.Next(chal); err != nil {
				t.Fatalf("%s client: %v", mech, err)
			}
		}
		if got != "alice@example.test" {
			t.Fatalf("%s: done(%q)", mech, got)
		}
	}
}

func TestSASLThrottled(t *testing.T) {
	a := saslAuth(t)
	for range a.Limiter.RefuseAfter {
		a.PlainServer(client, nil).Next([]byte("\x00alice@example.test\x00bad"))
	}
	srv := a.PlainServerContext(context.Background(), client, func(string) { t.Fatal("done called") })
	if _, _, err := srv.Next([]byte("\x00alice@example.test\x00s3cret")); !errors.Is(err, ErrThrottled) {
		t.Fatalf("PLAIN after many failures: %v", err)
	}
	srv = a.LoginServer(client, func(string) { t.Fatal("done called") })
	if _, err := run(srv, nil, []byte("alice@example.test"), []byte("s3cret")); !errors.Is(err, ErrThrottled) {
		t.Fatalf("LOGIN after many failures: %v", err)
	}
}

// FuzzSASL drives both servers with arbitrary responses: no panic, and
// success only for the right credentials.
func FuzzSASL(f *testing.F) {
	f.Add([]byte("\x00alice@example.test\x00s3cret"), []byte("alice@example.test"), []byte("s3cret"))
	f.Add([]byte("a\x00b\x00c\x00d"), []byte{}, []byte{0})
	f.Add([]byte{}, []byte("Username:"), []byte("\xff\xfe"))
	a := New(&fakeStore{accounts: map[string]store.Account{}}, nil)
	h, _ := HashPasswordParams("s3cret", TestParams)
	a.Store.(*fakeStore).accounts["alice@example.test"] = store.Account{Address: "alice@example.test", PasswordHash: h}
	a.Limiter = nil
	f.Fuzz(func(t *testing.T, r1, r2, r3 []byte) {
		for _, mk := range []func(func(string)) sasl.Server{
			func(d func(string)) sasl.Server { return a.PlainServer(client, d) },
			func(d func(string)) sasl.Server { return a.LoginServer(client, d) },
		} {
			got := ""
			srv := mk(func(acct string) { got = acct })
			for _, r := range [][]byte{r1, r2, r3, nil} {
				if _, done, err := srv.Next(r); err != nil || done {
					break
				}
			}
			if got != "" && (got != "alice@example.test" ||
				!bytes.Contains(bytes.Join([][]byte{r1, r2, r3}, nil), []byte("s3cret"))) {
				t.Fatalf("logged in as %q with %q %q %q", got, r1, r2, r3)
			}
		}
	})
}
