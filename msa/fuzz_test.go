package msa

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/posthorn/posthorn/mda"
	"github.com/posthorn/posthorn/store"
)

// fakeAuth accepts user "u@ours.test" with password "p".
type fakeAuth struct{}

func (fakeAuth) server(done func(string)) sasl.Server {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "u@ours.test" || pass != "p" {
			return errors.New("bad")
		}
		done(user)
		return nil
	})
}

func (a fakeAuth) PlainServer(_ net.Addr, done func(string)) sasl.Server { return a.server(done) }
func (a fakeAuth) LoginServer(_ net.Addr, done func(string)) sasl.Server { return a.server(done) }

// fakeDelivery serves ours.test and takes everything.
type fakeDelivery struct{}

func (fakeDelivery) Resolve(addr string) (mda.Route, error) {
	if strings.HasSuffix(strings.ToLower(addr), "@ours.test") {
		return mda.Route{Accounts: []string{"u@ours.test"}}, nil
	}
	return mda.Route{}, mda.ErrNotOurDomain
}

func (fakeDelivery) Deliver(context.Context, mda.Envelope, []byte) (mda.Result, error) {
	return mda.Result{}, nil
}

func (fakeDelivery) Enqueue(_ context.Context, e store.QueueEntry, _ []byte) (store.QueueEntry, error) {
	return e, nil
}

// fakeStore serves no DKIM domain; other methods are not used.
type fakeStore struct{ store.Store }

func (fakeStore) HasDomain(string) (bool, error) { return false, nil }
func (fakeStore) CheckRoom(int64) error          { return nil }
func (fakeStore) Account(addr string) (store.Account, error) {
	return store.Account{Address: addr}, nil
}

// FuzzSession feeds arbitrary client input to an authenticated
// submission session: no panic (go-smtp would turn one into 421), and the
// server keeps serving.
func FuzzSession(f *testing.F) {
	seeds := []string{
		"MAIL FROM:<u@ours.test>\r\nRCPT TO:<x@remote.test>\r\nDATA\r\nFrom: u@ours.test\r\n\r\nhi\r\n.\r\n",
		"MAIL FROM:<other@x.test>\r\n",
		"MAIL FROM:<u@ours.test> SMTPUTF8\r\nRCPT TO:<ü@remote.test>\r\nDATA\r\nFrom: =?utf-8?q?x?= <u@ours.test>\r\n\r\n.\r\n",
		"MAIL FROM:<u@ours.test>\r\nRCPT TO:<u@ours.test>\r\nBDAT 10 LAST\r\nFrom: a\nb\r\n",
		"MAIL FROM:<u@ours.test>\r\nRCPT TO:<u@ours.test>\r\nDATA\r\nFrom: <u@ours.test>, <v@elsewhere>\r\n\r\n.\r\n",
		"RCPT TO:<@>\r\nDATA\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	srv := &Server{
		Hostname: "mail.ours.test", AllowPlaintextAuth: true, Auth: fakeAuth{},
		Store: fakeStore{}, MDA: fakeDelivery{}, Queue: fakeDelivery{}, MaxMessageBytes: 1 << 16,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go srv.Serve(ln)
	f.Cleanup(func() { srv.Shutdown(context.Background()) })
	login := "EHLO fuzz.test\r\nAUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00u@ours.test\x00p")) + "\r\n"
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			io.WriteString(c, login)
			c.Write(in)
			io.WriteString(c, "\r\n.\r\nQUIT\r\n")
			c.(*net.TCPConn).CloseWrite()
		}()
		out, _ := io.ReadAll(c)
		if strings.Contains(string(out), "Internal server error") {
			t.Fatalf("panic in a session for input %q:\n%s", in, out)
		}
		if !strings.HasPrefix(string(out), "220 ") {
			t.Fatalf("no greeting: %q", out)
		}
	})
}
