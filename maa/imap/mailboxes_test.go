package imap

import (
	"sort"
	"strings"
	"testing"

	imapv2 "github.com/emersion/go-imap/v2"
)

func listNames(t *testing.T, l []*imapv2.ListData) map[string][]imapv2.MailboxAttr {
	t.Helper()
	out := map[string][]imapv2.MailboxAttr{}
	for _, d := range l {
		out[d.Mailbox] = d.Attrs
	}
	return out
}

func hasAttr(attrs []imapv2.MailboxAttr, a imapv2.MailboxAttr) bool {
	for _, x := range attrs {
		if strings.EqualFold(string(x), string(a)) {
			return true
		}
	}
	return false
}

func TestMailboxLifecycle(t *testing.T) {
	e := newTestEnv(t)
	c := e.login(testAlice)
	l, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	got := listNames(t, l)
	for name, attr := range map[string]imapv2.MailboxAttr{"Sent": imapv2.MailboxAttrSent, "Drafts": imapv2.MailboxAttrDrafts,
		"Trash": imapv2.MailboxAttrTrash, "Junk": imapv2.MailboxAttrJunk, "Archive": imapv2.MailboxAttrArchive} {
		if !hasAttr(got[name], attr) {
			t.Errorf("%s: attrs %v, want %s", name, got[name], attr)
		}
	}
	if _, ok := got["INBOX"]; !ok {
		t.Fatalf("no INBOX in %v", got)
	}

	if err := c.Create("Work/Projects/Posthorn", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Work", nil).Wait(); imapCode(err) != imapv2.ResponseCodeAlreadyExists {
		t.Fatalf("CREATE existing: %v", err)
	}
	l, _ = c.List("", "Work/%", nil).Collect()
	got = listNames(t, l)
	if len(got) != 1 || !hasAttr(got["Work/Projects"], imapv2.MailboxAttrHasChildren) {
		t.Fatalf("LIST Work/%%: %v", got)
	}
	l, _ = c.List("", "%", nil).Collect()
	if got = listNames(t, l); !hasAttr(got["Work"], imapv2.MailboxAttrHasChildren) || !hasAttr(got["Sent"], imapv2.MailboxAttrHasNoChildren) {
		t.Fatalf("LIST %%: %v", got)
	}
	if err := c.Delete("Work").Wait(); imapCode(err) != imapv2.ResponseCodeHasChildren {
		t.Fatalf("DELETE with children: %v", err)
	}
	if err := c.Rename("Work", "Jobs", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	l, _ = c.List("", "*", nil).Collect()
	got = listNames(t, l)
	if _, ok := got["Jobs/Projects/Posthorn"]; !ok {
		t.Fatalf("after RENAME: %v", keys(got))
	}
	if _, ok := got["Work/Projects"]; ok {
		t.Fatalf("old name still listed: %v", keys(got))
	}
	for _, n := range []string{"Jobs/Projects/Posthorn", "Jobs/Projects", "Jobs"} {
		if err := c.Delete(n).Wait(); err != nil {
			t.Fatalf("DELETE %s: %v", n, err)
		}
	}
	if err := c.Delete("INBOX").Wait(); err == nil {
		t.Fatal("DELETE INBOX succeeded")
	}
	if err := c.Create("Spam2", &imapv2.CreateOptions{SpecialUse: []imapv2.MailboxAttr{imapv2.MailboxAttrJunk}}).Wait(); err != nil {
		t.Fatalf("CREATE USE: %v", err)
	}
	l, _ = c.List("", "*", &imapv2.ListOptions{SelectSpecialUse: true}).Collect()
	if got = listNames(t, l); !hasAttr(got["Spam2"], imapv2.MailboxAttrJunk) || len(got) != 6 {
		t.Fatalf("LIST (SPECIAL-USE): %v", got)
	}
}

func keys(m map[string][]imapv2.MailboxAttr) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestSubscribeStatus(t *testing.T) {
	e := newTestEnv(t)
	c := e.login(testAlice)
	e.deliver(testAlice, "INBOX", testMessage(1, "one"))
	e.deliver(testAlice, "INBOX", testMessage(2, "two"), `\Seen`)
	if err := c.Create("Lists", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("Lists").Wait(); err != nil {
		t.Fatal(err)
	}
	l, err := c.List("", "*", &imapv2.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if got := listNames(t, l); !hasAttr(got["Lists"], imapv2.MailboxAttrSubscribed) {
		t.Fatalf("LIST (SUBSCRIBED): %v", got)
	}
	if err := c.Unsubscribe("Lists").Wait(); err != nil {
		t.Fatal(err)
	}
	l, _ = c.List("", "Lists", &imapv2.ListOptions{SelectSubscribed: true}).Collect()
	if len(l) != 0 {
		t.Fatalf("still subscribed: %v", l)
	}
	st, err := c.Status("INBOX", &imapv2.StatusOptions{NumMessages: true, NumUnseen: true, Size: true,
		UIDNext: true, UIDValidity: true, NumDeleted: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if *st.NumMessages != 2 || *st.NumUnseen != 1 || *st.Size == 0 || st.UIDNext != 3 || *st.NumDeleted != 0 {
		t.Fatalf("STATUS: %+v", st)
	}
	l, err = c.List("", "INBOX", &imapv2.ListOptions{ReturnStatus: &imapv2.StatusOptions{NumMessages: true}}).Collect()
	if err != nil || len(l) != 1 || l[0].Status == nil || *l[0].Status.NumMessages != 2 {
		t.Fatalf("LIST-STATUS: %v %+v", err, l)
	}
}

// TestOtherUsersMailboxesUnreachable tries names that could escape the
// account: every store call is scoped to the logged-in account.
func TestOtherUsersMailboxesUnreachable(t *testing.T) {
	e := newTestEnv(t)
	if _, err := e.st.CreateMailbox(testBob, "Secret", ""); err != nil {
		t.Fatal(err)
	}
	e.deliver(testBob, "Secret", testMessage(1, "bob's secret"))
	e.deliver(testBob, "INBOX", testMessage(2, "bob's inbox"))
	names := []string{"Secret", "bob@example.test/Secret", "bob@example.test/INBOX", "../bob@example.test/INBOX",
		"/bob@example.test/INBOX", "~bob/INBOX", "#shared/bob/INBOX", "Other Users/bob/INBOX", "..", "../Secret",
		"INBOX/../Secret", "\x00bob", "Secret\x00", "bob@example.test\x00INBOX", strings.Repeat("../", 30) + "Secret"}
	for _, n := range names {
		// A fresh connection each: names with NUL may get the connection
		// closed, which is a fine answer too.
		c := e.login(testAlice)
		if _, err := c.Select(n, nil).Wait(); err == nil {
			t.Errorf("SELECT %q succeeded", n)
		}
		if _, err := c.Status(n, &imapv2.StatusOptions{NumMessages: true}).Wait(); err == nil {
			t.Errorf("STATUS %q succeeded", n)
		}
		c.Close()
	}
	c := e.login(testAlice)
	l, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range l {
		if strings.Contains(d.Mailbox, "Secret") || strings.Contains(d.Mailbox, "bob") {
			t.Errorf("LIST shows %q", d.Mailbox)
		}
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 0 {
		t.Fatalf("alice's INBOX: %v %+v", err, sel)
	}
	bob, _ := e.st.Mailbox(testBob, "Secret")
	if bob.Messages != 1 {
		t.Fatalf("bob's Secret changed: %+v", bob)
	}
}

func TestBadNames(t *testing.T) {
	e := newTestEnv(t)
	c := e.login(testAlice)
	for _, n := range []string{"a//b", "/lead", "a\x01b", strings.Repeat("x", 300), strings.Repeat("a/", 25) + "z", "wild*"} {
		if err := c.Create(n, nil).Wait(); err == nil {
			t.Errorf("CREATE %q succeeded", n)
		}
	}
	if err := c.Create("Entwürfe", nil).Wait(); err != nil {
		t.Fatalf("CREATE UTF-8 name: %v", err)
	}
	l, _ := c.List("", "Entw*", nil).Collect()
	if len(l) != 1 || l[0].Mailbox != "Entwürfe" {
		t.Fatalf("LIST UTF-8: %+v", l)
	}
}
