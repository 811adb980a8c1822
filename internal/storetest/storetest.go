// Package storetest reads what a store holds, for tests: whole messages,
// as a client would get them.
package storetest

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/store"
)

// Body reads the stored message m whole.
func Body(t testing.TB, st store.Store, m store.Message) []byte {
	t.Helper()
	b, err := st.OpenMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	data, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Bodies reads the messages of one mailbox of account, in UID order.
func Bodies(t testing.TB, st store.Store, account, mailbox string) [][]byte {
	t.Helper()
	msgs, err := st.Messages(account, mailbox)
	if err != nil {
		t.Fatalf("messages of %s in %s: %v", account, mailbox, err)
	}
	out := make([][]byte, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, Body(t, st, m))
	}
	return out
}

// Texts is Bodies as strings.
func Texts(t testing.TB, st store.Store, account, mailbox string) []string {
	t.Helper()
	var out []string
	for _, b := range Bodies(t, st, account, mailbox) {
		out = append(out, string(b))
	}
	return out
}

// Fill makes account's mailbox full: a 4 KiB message goes to its Archive,
// and its quota is set to one octet more than it then uses (so that a
// recipient check without a size lets it through). A message smaller than
// the quota could fit once mail is deleted (a full mailbox, a temporary
// failure), where one larger than the whole quota never could.
func Fill(t testing.TB, st store.Store, account string) {
	t.Helper()
	body := []byte("Subject: filler\r\n\r\n" + strings.Repeat("x", 4096) + "\r\n")
	if _, err := st.Deliver(context.Background(), body, []store.Delivery{{Account: account, Mailbox: "Archive"}}); err != nil {
		t.Fatal(err)
	}
	acct, err := st.Account(account)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetQuota(account, acct.UsedBytes+1); err != nil {
		t.Fatal(err)
	}
}
