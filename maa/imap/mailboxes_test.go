package imap

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

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
	// A parent is deleted with its messages; its children stay, under a
	// \Noselect name that cannot be deleted or selected (RFC 9051 6.3.4),
	// as in Dovecot. mbsync's "Remove Both" deletes a tree parent first.
	e.deliver(testAlice, "Jobs", testMessage(1, "in the parent"))
	if err := c.Delete("Jobs").Wait(); err != nil {
		t.Fatalf("DELETE with children: %v", err)
	}
	l, _ = c.List("", "Jobs*", nil).Collect()
	got = listNames(t, l)
	if len(got) != 3 || !hasAttr(got["Jobs"], imapv2.MailboxAttrNoSelect) || !hasAttr(got["Jobs"], imapv2.MailboxAttrHasChildren) {
		t.Fatalf("LIST after DELETE of the parent: %v", got)
	}
	if _, err := c.Select("Jobs", nil).Wait(); err == nil {
		t.Fatal("SELECT of the deleted parent succeeded")
	}
	if err := c.Delete("Jobs").Wait(); imapCode(err) != imapv2.ResponseCodeHasChildren {
		t.Fatalf("DELETE of a \\Noselect name with children: %v", err)
	}
	// RENAME of such a name renames its tree, as in Dovecot.
	if err := c.Rename("Jobs", "Work", nil).Wait(); err != nil {
		t.Fatalf("RENAME of a \\Noselect name: %v", err)
	}
	l, _ = c.List("", "*", nil).Collect()
	got = listNames(t, l)
	if _, ok := got["Work/Projects/Posthorn"]; !ok || !hasAttr(got["Work"], imapv2.MailboxAttrNoSelect) || got["Jobs"] != nil {
		t.Fatalf("after RENAME of the \\Noselect parent: %v", got)
	}
	if err := c.Rename("Work", "Jobs", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Create("Jobs", nil).Wait(); err != nil {
		t.Fatalf("CREATE of the deleted parent: %v", err)
	}
	if mb, err := c.Select("Jobs", nil).Wait(); err != nil || mb.NumMessages != 0 {
		t.Fatalf("the parent made again: %v, %v", mb, err)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"Jobs", "Jobs/Projects", "Jobs/Projects/Posthorn"} {
		if err := c.Delete(n).Wait(); err != nil {
			t.Fatalf("DELETE %s: %v", n, err)
		}
	}
	l, _ = c.List("", "Jobs*", nil).Collect()
	if len(l) != 0 {
		t.Fatalf("LIST after deleting the tree: %v", listNames(t, l))
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

// TestListInboxCaseInsensitive: INBOX is case-insensitive (RFC 9051
// section 5.1) in LIST patterns too, as in Dovecot: "inbox*" and "iN%"
// match it; the rest of a name, and other names, match case-sensitively.
func TestListInboxCaseInsensitive(t *testing.T) {
	e := newTestEnv(t)
	for _, n := range []string{"INBOX/sub", "inboxes", "Inboxes"} {
		if _, err := e.st.CreateMailbox(testAlice, n, ""); err != nil {
			t.Fatal(err)
		}
	}
	c := e.login(testAlice)
	cases := []struct{ pattern, want string }{
		{"inbox*", "INBOX,INBOX/sub,inboxes"},
		{"INBOX*", "INBOX,INBOX/sub"},
		{"iN%", "INBOX"},
		{"Inbo%", "INBOX,Inboxes"},
		{"*x", "INBOX"},
		{"inbox/%", "INBOX/sub"},
		{"%/sub", "INBOX/sub"},
		{"inbox/SUB", ""},
		{"sent*", ""},
	}
	for _, tc := range cases {
		l, err := c.List("", tc.pattern, nil).Collect()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(keys(listNames(t, l)), ","); got != tc.want {
			t.Errorf("LIST \"\" %q: %q, want %q", tc.pattern, got, tc.want)
		}
	}
}

// TestDeleteKeepsSubscription: DELETE does not remove the subscription
// (RFC 9051 section 6.3.7): LSUB lists the name \Noselect (RFC 3501),
// and its parent \Noselect where "%" does not reach it (6.3.9),
// LIST (SUBSCRIBED) \NonExistent (RFC 5258), as Dovecot does; a plain
// LIST does not list it; UNSUBSCRIBE removes it; a mailbox created again
// is subscribed.
func TestDeleteKeepsSubscription(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	c := e.rawLogin(t, testAlice)
	for _, cmd := range []string{"CREATE cfsub", "SUBSCRIBE cfsub", "CREATE cfx/deep", "SUBSCRIBE cfx/deep",
		"DELETE cfsub", "DELETE cfx/deep", "DELETE cfx"} {
		c.send("a " + cmd)
		c.expect("a OK")
	}
	list := func(cmd string) string {
		t.Helper()
		c.send("l %s", cmd)
		lines := c.expect("l OK")
		return strings.Join(lines[:len(lines)-1], "")
	}
	for cmd, want := range map[string]string{
		`LSUB "" "cf*"`: "* LSUB (\\Noselect \\Subscribed) \"/\" \"cfsub\"\r\n" +
			"* LSUB (\\Noselect \\Subscribed) \"/\" \"cfx/deep\"\r\n",
		// RFC 3501 section 6.3.9: "%" stops at cfx, which is listed
		// \Noselect for its subscribed child.
		`LSUB "" "cf%"`: "* LSUB (\\Noselect \\Subscribed) \"/\" \"cfsub\"\r\n" +
			"* LSUB (\\Noselect) \"/\" \"cfx\"\r\n",
		`LSUB "" "cfx/%"`: "* LSUB (\\Noselect \\Subscribed) \"/\" \"cfx/deep\"\r\n",
		`LIST (SUBSCRIBED) "" "cf*"`: "* LIST (\\NonExistent \\Subscribed) \"/\" \"cfsub\"\r\n" +
			"* LIST (\\NonExistent \\Subscribed) \"/\" \"cfx/deep\"\r\n",
		`LIST (SUBSCRIBED RECURSIVEMATCH) "" "cf%"`: "* LIST (\\NonExistent \\Subscribed) \"/\" \"cfsub\"\r\n" +
			"* LIST (\\NonExistent) \"/\" \"cfx\" (CHILDINFO (\"SUBSCRIBED\"))\r\n",
		`LIST "" "cf*"`:                     "",
		`LIST "" "cf*" RETURN (SUBSCRIBED)`: "",
	} {
		if got := list(cmd); got != want {
			t.Errorf("%s:\n%q, want\n%q", cmd, got, want)
		}
	}
	c.send("a CREATE cfsub")
	c.expect("a OK")
	if got, want := list(`LIST (SUBSCRIBED) "" "cfsub"`), "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"cfsub\"\r\n"; got != want {
		t.Errorf("created again: %q, want %q", got, want)
	}
	c.send("a UNSUBSCRIBE cfx/deep")
	c.expect("a OK")
	if got, want := list(`LSUB "" "cf*"`), "* LSUB (\\HasNoChildren \\Subscribed) \"/\" \"cfsub\"\r\n"; got != want {
		t.Errorf("after UNSUBSCRIBE: %q, want %q", got, want)
	}
	c.send("a UNSUBSCRIBE cfx/deep")
	c.expect("a NO [NONEXISTENT]")
}

// TestRenameInboxToChild: RENAME INBOX INBOX/old moves INBOX's messages to
// the new child and leaves INBOX empty (RFC 9051 section 6.3.6), as
// Dovecot does; another mailbox cannot be renamed below itself.
func TestRenameInboxToChild(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	e.deliver(testAlice, "INBOX", testMessage(1, "one"))
	e.deliver(testAlice, "INBOX", testMessage(2, "two"))
	c := e.rawLogin(t, testAlice)
	c.send("r RENAME INBOX INBOX/old")
	c.expect("r OK")
	if ms, err := e.st.Messages(testAlice, "INBOX/old"); err != nil || len(ms) != 2 {
		t.Fatalf("INBOX/old: %d messages, %v", len(ms), err)
	}
	if ms, _ := e.st.Messages(testAlice, "INBOX"); len(ms) != 0 {
		t.Fatalf("INBOX keeps %d messages", len(ms))
	}
	c.send("s RENAME Sent Sent/old")
	c.expect("s NO [CANNOT]")
}

// TestNoUTF8Accept: UTF8=ACCEPT is not offered (see hiddenCap), neither
// in CAPABILITY nor in the login's response code, so that clients name
// mailboxes in modified UTF-7, which go-imap reads right: "R&D" is
// created and listed as "R&-D". Message data that reads like a capability
// list goes out as it is.
func TestNoUTF8Accept(t *testing.T) {
	e := newTestEnv(t, func(s *Server) { s.AllowPlaintextAuth = true })
	conn, r, _ := e.dialPlain()
	c := &rawClient{t: t, conn: conn, r: r}
	c.send(`0 LOGIN %s "%s"`, testAlice, testPass)
	login := c.expect("0 OK")
	c.send("1 CAPABILITY")
	caps := c.expect("1 OK")
	all := strings.Join(append(login, caps...), "")
	if strings.Contains(all, "UTF8=ACCEPT") || !strings.Contains(all, "* CAPABILITY ") ||
		!strings.Contains(all, " IMAP4rev2") || !strings.Contains(all, " ENABLE") {
		t.Errorf("capabilities after login:\n%s", all)
	}
	c.send(`2 CREATE "R&-D"`)
	c.expect("2 OK")
	c.send(`3 LIST "" "R*"`)
	if got := strings.Join(c.expect("3 OK"), ""); !strings.Contains(got, `"R&-D"`) && !strings.Contains(got, ` R&-D`) {
		t.Errorf("LIST: %q", got)
	}
	// ENABLE UTF8=ACCEPT, which mutt and neomutt send to any server
	// with ENABLE, enables nothing (as in Dovecot): names stay modified
	// UTF-7. The capability may come in pieces.
	for i, parts := range [][]string{{"4 ENABLE UTF8=ACCEPT\r\n"}, {"5 ENABLE IMAP4rev1 utf8=ac", "cept\r\n"}} {
		for _, p := range parts {
			if _, err := conn.Write([]byte(p)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		got := strings.Join(c.expect(fmt.Sprintf("%d OK", i+4)), "")
		if !strings.Contains(got, "* ENABLED") || strings.Contains(strings.ToUpper(got), "UTF8=ACCEPT") {
			t.Errorf("ENABLE answered %q", got)
		}
	}
	c.send(`6 SELECT "R&-D"`)
	c.expect("6 OK")
	c.send(`7 LIST "" "R*"`)
	if got := strings.Join(c.expect("7 OK"), ""); !strings.Contains(got, `"R&-D"`) && !strings.Contains(got, ` R&-D`) {
		t.Errorf("LIST after ENABLE: %q", got)
	}
	body := "Subject: caps\r\n\r\n* CAPABILITY IMAP4rev1 UTF8=ACCEPT\r\n1 OK [CAPABILITY IMAP4rev1 UTF8=ACCEPT] x\r\n"
	e.deliver(testAlice, "R&D", body)
	cl := e.login(testAlice)
	list, err := cl.List("", "R*", nil).Collect()
	if err != nil || len(list) != 1 || list[0].Mailbox != "R&D" {
		t.Fatalf("imapclient lists %v, %v; want R&D", list, err)
	}
	if _, err := cl.Select("R&D", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := cl.Fetch(imapv2.SeqSetNum(1), &imapv2.FetchOptions{BodySection: []*imapv2.FetchItemBodySection{{}}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v, %v", msgs, err)
	}
	for _, b := range msgs[0].BodySection {
		if string(b.Bytes) != body {
			t.Errorf("the message body came out as %q", b.Bytes)
		}
	}
}
