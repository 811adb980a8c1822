package mda

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/storetest"
	"github.com/posthorn/posthorn/store"
)

func newAgent(t *testing.T) (*Agent, store.Store) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "posthorn.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.AddDomain("example.test"))
	must(st.AddDomain("other.test"))
	for _, a := range []string{"alice@example.test", "bob@example.test", "carol@other.test"} {
		must(st.AddAccount(a, "x"))
	}
	must(st.AddAlias("team@example.test", []string{"alice@example.test", "Bob@Example.test", "list@example.test"}))
	must(st.AddAlias("list@example.test", []string{"carol@other.test", "dave@remote.example"}))
	must(st.AddAlias("loop1@example.test", []string{"loop2@example.test"}))
	must(st.AddAlias("loop2@example.test", []string{"loop3@example.test"}))
	must(st.AddAlias("loop3@example.test", []string{"loop1@example.test"}))
	must(st.AddAlias("@other.test", []string{"carol@other.test"}))
	must(st.AddAlias("dangling@example.test", []string{"nobody@example.test"}))
	must(st.AddAlias("tagged@example.test", []string{"bob+lists@example.test"}))
	return &Agent{Store: st}, st
}

// accounts is the route to accounts each reached by its own address.
func accounts(addrs ...string) Route {
	return Route{Accounts: addrs, DeliveredTo: addrs}
}

func TestResolve(t *testing.T) {
	a, _ := newAgent(t)
	cases := []struct {
		addr  string
		route Route
		err   error
	}{
		{"alice@example.test", accounts("alice@example.test"), nil},
		{"ALICE@Example.TEST", accounts("alice@example.test"), nil},
		// Delivered-To keeps the +tag (as Postfix local(8) writes it).
		{"alice+news@example.test", Route{Accounts: []string{"alice@example.test"},
			DeliveredTo: []string{"alice+news@example.test"}}, nil},
		{"Alice+News@Example.test.", Route{Accounts: []string{"alice@example.test"},
			DeliveredTo: []string{"alice+news@example.test"}}, nil},
		{"team@example.test", Route{Accounts: []string{"alice@example.test", "bob@example.test", "carol@other.test"},
			DeliveredTo: []string{"alice@example.test", "bob@example.test", "carol@other.test"},
			Remote:      []string{"dave@remote.example"}}, nil},
		{"team+x@example.test", Route{Accounts: []string{"alice@example.test", "bob@example.test", "carol@other.test"},
			DeliveredTo: []string{"alice@example.test", "bob@example.test", "carol@other.test"},
			Remote:      []string{"dave@remote.example"}}, nil},
		{"tagged@example.test", Route{Accounts: []string{"bob@example.test"},
			DeliveredTo: []string{"bob+lists@example.test"}}, nil}, // an alias to a tagged address
		{"anything@other.test", accounts("carol@other.test"), nil}, // catch-all
		{"carol@other.test", accounts("carol@other.test"), nil},
		{"nobody@example.test", Route{}, ErrUnknownUser},
		{"dangling@example.test", Route{}, ErrUnknownUser},
		{"loop1@example.test", Route{}, ErrAliasLoop},
		{"alice@remote.example", Route{}, ErrNotOurDomain},
		{"alice@[127.0.0.1]", Route{}, ErrNotOurDomain},
		{"alice%remote.example@example.test", Route{}, ErrBadAddress},
		{"remote.example!alice@example.test", Route{}, ErrBadAddress},
		{"alice@remote.example@example.test", Route{}, ErrBadAddress},
		{"a b@example.test", Route{}, ErrBadAddress},
		{"\"alice\"@example.test", Route{}, ErrBadAddress},
		{"@example.test:alice@remote.example", Route{}, ErrBadAddress},
		{"alice", Route{}, ErrBadAddress},
		{".alice@example.test", Route{}, ErrBadAddress},
		// Another host's local parts are its own to read: relayed on
		// submission (go-smtp gives a quoted local part unquoted).
		{"john doe@remote.example", Route{}, ErrNotOurDomain},
		{"john%host@remote.example", Route{}, ErrNotOurDomain},
		{"host!john@remote.example", Route{}, ErrNotOurDomain},
		{strings.Repeat("x", 65) + "@remote.example", Route{}, ErrNotOurDomain},
		{strings.Repeat("x", 65) + "@example.test", Route{}, ErrBadAddress},
		{"a\x01b@remote.example", Route{}, ErrBadAddress},
		{"john doe@café.example", Route{}, ErrNotOurDomain},
	}
	for _, c := range cases {
		r, err := a.Resolve(c.addr)
		if !errors.Is(err, c.err) {
			t.Errorf("Resolve(%q) error %v, want %v", c.addr, err, c.err)
			continue
		}
		if err == nil && !reflect.DeepEqual(r, c.route) {
			t.Errorf("Resolve(%q) = %+v, want %+v", c.addr, r, c.route)
		}
	}
}

func TestDeliverStoresOnce(t *testing.T) {
	a, st := newAgent(t)
	body := []byte("Subject: hi\r\n\r\nhello\r\n")
	_, err := a.Deliver(context.Background(), Envelope{From: "x@remote.example", Recipients: []string{"team@example.test"}}, body)
	if !errors.Is(err, ErrNoQueue) {
		t.Fatalf("remote target without a queue: %v", err)
	}
	q := &fakeQueue{}
	a.Queue = q
	res, err := a.Deliver(context.Background(), Envelope{From: "x@remote.example",
		Recipients: []string{"team@example.test", "alice+x@example.test"}}, body)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Delivered) != 3 || !reflect.DeepEqual(res.Queued, []string{"dave@remote.example"}) {
		t.Fatalf("result %+v", res)
	}
	var blob uint64
	for _, acct := range []string{"alice@example.test", "bob@example.test", "carol@other.test"} {
		msgs, err := st.Messages(acct, "INBOX")
		if err != nil || len(msgs) != 1 {
			t.Fatalf("%s: %d messages, %v", acct, len(msgs), err)
		}
		if blob != 0 && msgs[0].BlobID != blob {
			t.Errorf("body stored more than once")
		}
		blob = msgs[0].BlobID
		b, _ := st.OpenMessage(msgs[0])
		data, _ := io.ReadAll(b)
		b.Close()
		want := "Return-Path: <x@remote.example>\r\nDelivered-To: " + acct + "\r\n" + string(body)
		if string(data) != want {
			t.Errorf("%s got %q, want %q", acct, data, want)
		}
	}
	if len(q.entries) != 1 || q.entries[0].Recipients[0].Address != "dave@remote.example" || string(q.bodies[0]) != string(body) {
		t.Errorf("queued %+v", q.entries)
	}
}

func TestDeliverJunkAndQuota(t *testing.T) {
	a, st := newAgent(t)
	body := []byte("Subject: spam\r\n\r\nbuy\r\n")
	if _, err := a.Deliver(context.Background(), Envelope{Recipients: []string{"bob@example.test"}, Junk: true}, body); err != nil {
		t.Fatal(err)
	}
	if msgs, _ := st.Messages("bob@example.test", "Junk"); len(msgs) != 1 {
		t.Errorf("Junk has %d messages", len(msgs))
	}
	storetest.Fill(t, st, "alice@example.test")
	r, _ := a.Resolve("alice@example.test")
	if err := a.CheckQuota(r, 100); !errors.Is(err, store.ErrOverQuota) {
		t.Errorf("CheckQuota: %v", err)
	}
	_, err := a.Deliver(context.Background(), Envelope{Recipients: []string{"alice@example.test", "bob@example.test"}}, body)
	if !errors.Is(err, store.ErrOverQuota) {
		t.Errorf("Deliver over quota: %v", err)
	}
	if msgs, _ := st.Messages("bob@example.test", "INBOX"); len(msgs) != 0 {
		t.Errorf("partial delivery: bob got %d", len(msgs))
	}
}

type fakeQueue struct {
	entries []store.QueueEntry
	bodies  [][]byte
}

func (q *fakeQueue) Enqueue(_ context.Context, e store.QueueEntry, body []byte) (store.QueueEntry, error) {
	e.ID = "q1"
	q.entries = append(q.entries, e)
	q.bodies = append(q.bodies, body)
	return e, nil
}

// TestPostmaster: postmaster@ each of our domains is accepted (RFC 5321
// section 4.5.1) and reaches the domain's oldest account unless an alias
// or catch-all says otherwise; a domain without accounts still refuses it.
func TestPostmaster(t *testing.T) {
	a, st := newAgent(t)
	if err := st.AddDomain("empty.test"); err != nil {
		t.Fatal(err)
	}
	if err := st.AddDomain("aliased.test"); err != nil {
		t.Fatal(err)
	}
	if err := st.AddAccount("zed@aliased.test", "x"); err != nil {
		t.Fatal(err)
	}
	if err := st.AddAlias("postmaster@aliased.test", []string{"bob@example.test"}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		addr string
		want []string
		err  error
	}{
		{"postmaster@example.test", []string{"alice@example.test"}, nil},
		{"PostMaster@Example.Test", []string{"alice@example.test"}, nil},
		{"postmaster+dmarc@example.test", []string{"alice@example.test"}, nil},
		{"postmaster@other.test", []string{"carol@other.test"}, nil}, // the catch-all
		{"postmaster@aliased.test", []string{"bob@example.test"}, nil},
		{"postmaster@empty.test", []string{"alice@example.test"}, nil}, // the server's postmaster
		{"webmaster@example.test", nil, ErrUnknownUser},
	}
	for _, c := range cases {
		r, err := a.Resolve(c.addr)
		if !errors.Is(err, c.err) || !reflect.DeepEqual(r.Accounts, c.want) {
			t.Errorf("%s: %v %v, want %v %v", c.addr, r.Accounts, err, c.want, c.err)
		}
	}
}

// TestHostPostmaster: postmaster and MAILER-DAEMON at the server's own
// name are taken (our DSNs come from MAILER-DAEMON@hostname): to the
// postmaster of the domain the name is in when that is ours, else to the
// oldest account; nothing else at that name is.
func TestHostPostmaster(t *testing.T) {
	a, _ := newAgent(t)
	for _, c := range []struct {
		host, addr string
		route      Route
		err        error
	}{
		{"mail.example.test", "postmaster@mail.example.test", accounts("alice@example.test"), nil},
		{"mail.example.test", "Postmaster@MAIL.example.test", accounts("alice@example.test"), nil},
		{"mail.example.test", "MAILER-DAEMON@mail.example.test", accounts("alice@example.test"), nil},
		{"mx.other.test.", "postmaster@mx.other.test", accounts("carol@other.test"), nil}, // catch-all of other.test
		{"mail.elsewhere.example", "postmaster@mail.elsewhere.example", accounts("alice@example.test"), nil},
		{"mail.example.test", "alice@mail.example.test", Route{}, ErrNotOurDomain},
		{"", "postmaster@mail.example.test", Route{}, ErrNotOurDomain},
	} {
		a.Hostname = c.host
		r, err := a.Resolve(c.addr)
		if !errors.Is(err, c.err) || err == nil && !reflect.DeepEqual(r, c.route) {
			t.Errorf("hostname %q: Resolve(%q) = %+v, %v; want %+v, %v", c.host, c.addr, r, err, c.route, c.err)
		}
	}
}

// TestAliasToHostPostmaster: an alias target at the server's own name is
// resolved on the alias's own path, as Resolve resolves the address. It
// was queued as remote, and the queue delivered it locally (it is ours),
// resolving the alias again: an alias or catch-all leading to
// postmaster@<hostname> forwarded one message to itself without end.
func TestAliasToHostPostmaster(t *testing.T) {
	a, st := newAgent(t)
	a.Hostname = "mail.example.test"
	if err := st.AddAlias("abuse@example.test", []string{"postmaster@mail.example.test"}); err != nil {
		t.Fatal(err)
	}
	r, err := a.Resolve("abuse@example.test")
	if err != nil || !reflect.DeepEqual(r, accounts("alice@example.test")) {
		t.Errorf("abuse@ -> postmaster@host: %+v, %v; want alice's INBOX", r, err)
	}
	// postmaster@example.test -> postmaster@mail.example.test is
	// postmaster@example.test again.
	if err := st.AddAlias("postmaster@example.test", []string{"postmaster@mail.example.test"}); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"postmaster@example.test", "abuse@example.test", "postmaster@mail.example.test"} {
		if r, err := a.Resolve(addr); !errors.Is(err, ErrAliasLoop) {
			t.Errorf("%s: %+v, %v; want an alias loop", addr, r, err)
		}
	}
	// The catch-all form: any unknown address led there.
	if err := st.DeleteAlias("postmaster@example.test"); err != nil {
		t.Fatal(err)
	}
	if err := st.AddAlias("@example.test", []string{"postmaster@mail.example.test"}); err != nil {
		t.Fatal(err)
	}
	// The catch-all leads back to postmaster: postmaster is taken all the
	// same (RFC 5321 section 4.5.1), as the server's, and so is any
	// address the catch-all takes.
	for _, addr := range []string{"postmaster@example.test", "nobody@example.test"} {
		if r, err := a.Resolve(addr); err != nil || !reflect.DeepEqual(r.Accounts, []string{"alice@example.test"}) {
			t.Errorf("catch-all to postmaster@host, %s: %+v, %v; want alice", addr, r, err)
		}
	}
	if err := st.SetDisabled("alice@example.test", true); err != nil {
		t.Fatal(err)
	}
	if err := st.AddAlias("@example.test", []string{"alice@example.test"}); err != nil {
		t.Fatal(err)
	}
	if r, err := a.Resolve("postmaster@example.test"); err != nil || !reflect.DeepEqual(r.Accounts, []string{"bob@example.test"}) {
		t.Errorf("catch-all to a disabled account: %+v, %v; want postmaster taken, by bob", r, err)
	}
	if err := st.SetDisabled("alice@example.test", false); err != nil {
		t.Fatal(err)
	}
	// Other local parts at the host name are not ours: remote, as before.
	if err := st.AddAlias("fwd@other.test", []string{"someone@mail.example.test"}); err != nil {
		t.Fatal(err)
	}
	if r, err := a.Resolve("fwd@other.test"); err != nil || !reflect.DeepEqual(r.Remote, []string{"someone@mail.example.test"}) {
		t.Errorf("fwd@other.test: %+v, %v", r, err)
	}
	// Another host's local part is its own: forwarded as it is.
	if err := st.AddAlias("pct@other.test", []string{"john%x@remote.example"}); err != nil {
		t.Fatal(err)
	}
	if r, err := a.Resolve("pct@other.test"); err != nil || !reflect.DeepEqual(r.Remote, []string{"john%x@remote.example"}) {
		t.Errorf("pct@other.test: %+v, %v", r, err)
	}
}

// TestAliasMemberGone: a member of an alias deleted or disabled since it
// was made is left out; the others get the message, as in Postfix. The
// alias is refused only when no member is left.
func TestAliasMemberGone(t *testing.T) {
	a, st := newAgent(t)
	for _, u := range []string{"dave@example.test", "erin@example.test"} {
		if err := st.AddAccount(u, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.AddAlias("grp@example.test", []string{"alice@example.test", "dave@example.test", "erin@example.test"}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddAlias("pair@example.test", []string{"dave@example.test", "erin@example.test"}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetDisabled("dave@example.test", true); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteAccount("erin@example.test"); err != nil {
		t.Fatal(err)
	}
	r, err := a.Resolve("grp@example.test")
	if err != nil || !reflect.DeepEqual(r, accounts("alice@example.test")) {
		t.Errorf("grp@: %+v, %v; want alice alone", r, err)
	}
	if r, err := a.Resolve("pair@example.test"); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("pair@ with both members gone: %+v, %v; want no such user", r, err)
	}
	// A loop is still an error, whatever the other members.
	if err := st.AddAlias("mixed@example.test", []string{"alice@example.test", "loop1@example.test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Resolve("mixed@example.test"); !errors.Is(err, ErrAliasLoop) {
		t.Errorf("mixed@: %v, want an alias loop", err)
	}
}

// TestResolveULabels: a domain of ours written in U-labels is the same
// domain (RFC 5890 section 2.3.2.1): mail to x@café.example reaches the
// account of xn--caf-dma.example (on submission it was sent out).
func TestResolveULabels(t *testing.T) {
	a, st := newAgent(t)
	if err := st.AddDomain("xn--caf-dma.example"); err != nil {
		t.Fatal(err)
	}
	if err := st.AddAccount("x@xn--caf-dma.example", "x"); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"x@café.example", "X@CAFÉ.example.", "x@xn--caf-dma.example"} {
		if r, err := a.Resolve(addr); err != nil || !reflect.DeepEqual(r.Accounts, []string{"x@xn--caf-dma.example"}) {
			t.Errorf("%s: %+v, %v", addr, r, err)
		}
	}
	if _, err := a.Resolve("x@thé.example"); !errors.Is(err, ErrNotOurDomain) {
		t.Errorf("another U-label domain: %v", err)
	}
	// A local part we never deliver to, at our domain in U-labels: not
	// relayed out as another host's (submission sent it to the Internet).
	if _, err := a.Resolve("john doe@café.example"); !errors.Is(err, ErrBadAddress) {
		t.Errorf("john doe@café.example: %v, want ErrBadAddress", err)
	}
}

// TestForwardToUTF8AddressIsSMTPUTF8: a message forwarded to an alias
// target with a non-ASCII local part is queued as SMTPUTF8, whatever the
// incoming transaction used (RFC 6531 section 3.2), so that the queue
// sends it with SMTPUTF8 and a DSN for it is a global-delivery-status
// (RFC 6533); an ASCII target keeps the transaction's flag.
func TestForwardToUTF8AddressIsSMTPUTF8(t *testing.T) {
	a, st := newAgent(t)
	q := &fakeQueue{}
	a.Queue = q
	if err := st.AddAlias("eai@example.test", []string{"josé@remote.example"}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddAlias("plain@example.test", []string{"jose@remote.example"}); err != nil {
		t.Fatal(err)
	}
	body := []byte("Subject: hi\r\n\r\nhello\r\n")
	for _, to := range []string{"eai@example.test", "plain@example.test"} {
		if _, err := a.Deliver(context.Background(), Envelope{From: "x@remote.example", Recipients: []string{to}}, body); err != nil {
			t.Fatal(err)
		}
	}
	if len(q.entries) != 2 || !q.entries[0].SMTPUTF8 || q.entries[1].SMTPUTF8 {
		t.Errorf("queued %+v, want the first SMTPUTF8 only", q.entries)
	}
}

// TestCatchAllToDeletedAccount: a catch-all whose target was deleted
// leads unknown addresses, the deleted account and aliases to it to "no
// such user" (550 5.1.1), not to a routing loop (5.4.6): the target falls
// into the catch-all that led to it (probe 8). A real loop stays one.
func TestCatchAllToDeletedAccount(t *testing.T) {
	a, st := newAgent(t)
	for _, al := range [][2]string{{"@example.test", "hal@example.test"}, {"info@example.test", "hal@example.test"},
		{"loopx@example.test", "loopy@example.test"}, {"loopy@example.test", "loopx@example.test"}} {
		if err := st.AddAlias(al[0], []string{al[1]}); err != nil {
			t.Fatal(err)
		}
	}
	for _, addr := range []string{"hal@example.test", "nobody@example.test", "info@example.test"} {
		if r, err := a.Resolve(addr); !errors.Is(err, ErrUnknownUser) {
			t.Errorf("%s: %+v, %v; want no such user", addr, r, err)
		}
	}
	if _, err := a.Resolve("loopx@example.test"); !errors.Is(err, ErrAliasLoop) {
		t.Errorf("loopx@: %v, want an alias loop", err)
	}
	if r, err := a.Resolve("postmaster@example.test"); err != nil || len(r.Accounts) != 1 {
		t.Errorf("postmaster@: %+v, %v", r, err)
	}
}

// TestQueuedKeepsOriginalRecipient: a copy queued for an alias's target
// (remote, or a full mailbox) records the recipient the sender gave, for
// the DSN's Original-Recipient (probe 8: a bounce named only the internal
// member address); a recipient given as it is records none.
func TestQueuedKeepsOriginalRecipient(t *testing.T) {
	a, st := newAgent(t)
	q := &fakeQueue{}
	a.Queue = q
	if err := st.AddAlias("list@example.test", []string{"dave@remote.example", "full@example.test"}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddAccount("full@example.test", "x"); err != nil {
		t.Fatal(err)
	}
	storetest.Fill(t, st, "full@example.test")
	body := []byte("Subject: hi\r\n\r\nhello\r\n")
	if _, err := a.Deliver(context.Background(), Envelope{From: "x@remote.example",
		Recipients: []string{"list@example.test"}}, body); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range q.entries {
		for _, r := range e.Recipients {
			got[r.Address] = r.Original
		}
	}
	if got["dave@remote.example"] != "list@example.test" || got["full@example.test"] != "list@example.test" {
		t.Errorf("queued recipients' originals %v, want list@example.test for both", got)
	}
}
