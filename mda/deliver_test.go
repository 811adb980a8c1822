package mda

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/internal/storetest"
	"github.com/posthorn/posthorn/store"
)

// TestDeliveredToKeepsTag: Delivered-To is the address that reached the
// account, +tag included, as Postfix's local(8) and Dovecot's LMTP write
// it; an account reached twice in one message gets one copy, with the
// first recipient's address; an alias target's own tag is kept too.
func TestDeliveredToKeepsTag(t *testing.T) {
	a, st := newAgent(t)
	body := []byte("Subject: tags\r\n\r\nhello\r\n")
	env := Envelope{From: "x@remote.example",
		Recipients: []string{"Alice+News@example.test", "alice@example.test", "tagged@example.test"}}
	if _, err := a.Deliver(context.Background(), env, body); err != nil {
		t.Fatal(err)
	}
	for acct, to := range map[string]string{"alice@example.test": "alice+news@example.test", "bob@example.test": "bob+lists@example.test"} {
		got := storetest.Texts(t, st, acct, "INBOX")
		want := "Return-Path: <x@remote.example>\r\nDelivered-To: " + to + "\r\n" + string(body)
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s has %q, want one %q", acct, got, want)
		}
	}
}

// TestDeliverPastAFullMailbox: one full mailbox among the recipients does
// not fail the message (Postfix and Dovecot LMTP deliver per recipient):
// the others get it now and the full one's copy is queued, with its
// Delivered-To address and Junk kept. With every mailbox full, nothing
// is stored or queued, and the message gets ErrOverQuota (452 4.2.2).
func TestDeliverPastAFullMailbox(t *testing.T) {
	a, st := newAgent(t)
	q := &fakeQueue{}
	a.Queue = q
	storetest.Fill(t, st, "alice@example.test")
	body := []byte("Subject: full\r\n\r\nhello\r\n")
	env := Envelope{From: "x@remote.example", Recipients: []string{"alice+news@example.test", "bob@example.test"}, Junk: true}
	res, err := a.Deliver(context.Background(), env, body)
	if err != nil {
		t.Fatalf("one full mailbox failed the message: %v", err)
	}
	if !reflect.DeepEqual(res.Deferred, []string{"alice+news@example.test"}) || len(res.Delivered) != 1 {
		t.Errorf("result %+v, want bob delivered and alice+news deferred", res)
	}
	if got := storetest.Texts(t, st, "bob@example.test", "Junk"); len(got) != 1 || !strings.Contains(got[0], "Delivered-To: bob@example.test\r\n") {
		t.Errorf("bob's Junk has %q", got)
	}
	if got := storetest.Texts(t, st, "alice@example.test", "INBOX"); len(got) != 0 {
		t.Errorf("alice, full, got %d messages", len(got))
	}
	if len(q.entries) != 1 {
		t.Fatalf("%d queue entries, want 1", len(q.entries))
	}
	want := store.QueueEntry{ID: "q1", From: "x@remote.example", Junk: true,
		Recipients: []store.QueueRecipient{{Address: "alice+news@example.test"}}}
	if !reflect.DeepEqual(q.entries[0], want) || string(q.bodies[0]) != string(body) {
		t.Errorf("queued %+v %q, want %+v with the body", q.entries[0], q.bodies[0], want)
	}

	storetest.Fill(t, st, "bob@example.test")
	_, err = a.Deliver(context.Background(), Envelope{From: "x@remote.example", Recipients: []string{"alice@example.test", "bob@example.test"}}, body)
	if !errors.Is(err, store.ErrOverQuota) {
		t.Errorf("every mailbox full: %v, want ErrOverQuota", err)
	}
	if len(q.entries) != 1 || len(storetest.Texts(t, st, "bob@example.test", "INBOX")) != 0 {
		t.Errorf("every mailbox full, yet something was queued (%d entries) or stored", len(q.entries))
	}
}

// TestDeliverFullMailboxesAndRemote: when every local mailbox is full but
// an alias also forwards outside, the message is accepted for the remote
// address and the local copies wait in the queue.
func TestDeliverFullMailboxesAndRemote(t *testing.T) {
	a, st := newAgent(t)
	q := &fakeQueue{}
	a.Queue = q
	for _, acct := range []string{"alice@example.test", "bob@example.test", "carol@other.test"} {
		storetest.Fill(t, st, acct)
	}
	res, err := a.Deliver(context.Background(), Envelope{From: "x@remote.example", Recipients: []string{"team@example.test"}},
		[]byte("Subject: t\r\n\r\nhi\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Delivered) != 0 || len(res.Deferred) != 3 || !reflect.DeepEqual(res.Queued, []string{"dave@remote.example"}) {
		t.Errorf("result %+v", res)
	}
	if len(q.entries) != 2 {
		t.Errorf("%d queue entries, want the full mailboxes' and the forward", len(q.entries))
	}
}
