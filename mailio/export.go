package mailio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/posthorn/posthorn/store"
)

// ExportMaildir writes every mailbox of account to dir as Maildir++: INBOX
// at the top, "Sub/Folder" in ".Sub.Folder" and INBOX's child "INBOX/Sub"
// in ".INBOX.Sub", as Dovecot does (modified UTF-7, with '.' inside a name
// encoded too); ImportMaildir reads the names back unchanged. Each message
// is written byte for byte as stored, into tmp/ and then renamed into cur/
// with its flags in the file name and its internal date as modification
// time; keywords go to each folder's dovecot-keywords (at most 26 per
// folder, as Dovecot allows).
// dir must not exist or be empty. It returns the number of messages
// written.
func ExportMaildir(ctx context.Context, st store.Store, dir, account string, progress Progress) (int, error) {
	if _, err := st.Account(account); err != nil {
		return 0, fmt.Errorf("account %s: %w", account, err)
	}
	if err := emptyDir(dir); err != nil {
		return 0, err
	}
	mboxes, err := st.Mailboxes(account)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, mb := range mboxes {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		path := dir
		if mb.Name != "INBOX" {
			path = filepath.Join(dir, "."+maildirName(mb.Name))
		}
		err := exportMailbox(ctx, st, account, mb, path, func() {
			n++
			if progress != nil {
				progress(n)
			}
		})
		if err != nil {
			return n, fmt.Errorf("mailbox %s: %w", mb.Name, err)
		}
	}
	return n, nil
}

// emptyDir makes dir, or checks that an existing one is empty.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s is not empty", dir)
	}
	return nil
}

// maildirName is a mailbox name as a Maildir++ folder name: '/' becomes
// the separator '.', each component in modified UTF-7.
func maildirName(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = encodeUTF7(p, func(r rune) bool { return r != '.' && r != '/' })
	}
	return strings.Join(parts, ".")
}

// exportMailbox writes one mailbox; done is called per message.
func exportMailbox(ctx context.Context, st store.Store, account string, mb store.Mailbox, path string, done func()) error {
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(path, sub), 0o700); err != nil {
			return err
		}
	}
	if mb.Name != "INBOX" {
		// Maildir++ marks subfolders with an empty maildirfolder file.
		if err := os.WriteFile(filepath.Join(path, "maildirfolder"), nil, 0o600); err != nil {
			return err
		}
	}
	msgs, err := st.Messages(account, mb.Name)
	if err != nil {
		return err
	}
	kw := keywordLetters(msgs)
	if err := writeKeywords(path, kw); err != nil {
		return err
	}
	for _, m := range msgs {
		if err := ctx.Err(); err != nil {
			return err
		}
		// The UID is zero-padded to its 10 digits at most, so that names
		// with the same internal date sort in UID order even as strings.
		name := fmt.Sprintf("%d.M%dU%010d.posthorn:2,%s", m.InternalDate.Unix(), mb.ID, m.UID, flagLetters(m.Flags, kw))
		if err := writeMessage(st, m, path, name); err != nil {
			return fmt.Errorf("message UID %d: %w", m.UID, err)
		}
		done()
	}
	return nil
}

// writeMessage copies one message into tmp/ and renames it into cur/, as
// the Maildir delivery protocol does.
func writeMessage(st store.Store, m store.Message, path, name string) error {
	b, err := st.OpenMessage(m)
	if err != nil {
		return err
	}
	defer b.Close()
	tmp := filepath.Join(path, "tmp", name)
	fh, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(fh, b); err != nil {
		fh.Close()
		os.Remove(tmp)
		return err
	}
	if err := fh.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if !m.InternalDate.IsZero() {
		if err := os.Chtimes(tmp, m.InternalDate, m.InternalDate); err != nil {
			return err
		}
	}
	return os.Rename(tmp, filepath.Join(path, "cur", name))
}

// keywordLetters gives each keyword of a mailbox a letter a..z, in sorted
// order; keywords beyond 26 get none.
func keywordLetters(msgs []store.Message) map[string]byte {
	set := map[string]bool{}
	for _, m := range msgs {
		for _, f := range m.Flags {
			if !strings.HasPrefix(f, `\`) {
				set[f] = true
			}
		}
	}
	names := make([]string, 0, len(set))
	for k := range set {
		names = append(names, k)
	}
	sort.Strings(names)
	m := map[string]byte{}
	for i, k := range names {
		if i < 26 {
			m[k] = 'a' + byte(i)
		}
	}
	return m
}

func writeKeywords(path string, kw map[string]byte) error {
	if len(kw) == 0 {
		return nil
	}
	lines := make([]string, 0, len(kw))
	for k, c := range kw {
		lines = append(lines, fmt.Sprintf("%d %s", c-'a', k))
	}
	sort.Slice(lines, func(i, j int) bool { return kwIndex(lines[i]) < kwIndex(lines[j]) })
	return os.WriteFile(filepath.Join(path, "dovecot-keywords"), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

func kwIndex(line string) int {
	var i int
	fmt.Sscanf(line, "%d", &i)
	return i
}

// flagLetters is the info suffix for flags, letters in ASCII order as the
// Maildir specification asks.
func flagLetters(flags []string, kw map[string]byte) string {
	var b []byte
	for _, f := range flags {
		for c, name := range maildirFlags {
			if strings.EqualFold(f, name) {
				b = append(b, c)
			}
		}
		if c, ok := kw[f]; ok {
			b = append(b, c)
		}
	}
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	return string(b)
}
