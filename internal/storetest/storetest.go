// Package storetest reads what a store holds, for tests: whole messages,
// as a client would get them.
package storetest

import (
	"io"
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
