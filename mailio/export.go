package mailio

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/posthorn/posthorn/store"
)

// An export, like an import (see stream.go), is two halves: the server
// reads the store and writes the Maildir++ tree as a tar archive
// (ArchiveMaildir), and the CLI, with its own user's rights, writes the
// files (ExtractMaildir). The control socket carries the archive between
// them; ExportMaildir joins the two with a pipe.

// ExportMaildir writes every mailbox of account to dir as Maildir++: INBOX
// at the top, "Sub/Folder" in ".Sub.Folder" and INBOX's child "INBOX/Sub"
// in ".INBOX.Sub", as Dovecot does (modified UTF-7, with '.' inside a name
// encoded too); ImportMaildir reads the names back unchanged. Each message
// is written byte for byte as stored, into tmp/ and then renamed into cur/
// with its flags in the file name and its internal date as modification
// time; keywords go to each folder's dovecot-keywords (at most 26 per
// folder, as Dovecot allows: see keywordLetters). The subscribed mailboxes
// go to Dovecot's subscriptions file at the top (see subscriptionsFile).
// dir must not exist or be empty. It returns what it wrote, and the
// keywords it could not keep.
func ExportMaildir(ctx context.Context, st store.Store, dir, account string, progress Progress) (ExportResult, error) {
	if _, err := st.Account(account); err != nil {
		return ExportResult{}, fmt.Errorf("account %s: %w", account, err)
	}
	if err := emptyDir(dir); err != nil {
		return ExportResult{}, err
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := ExtractMaildir(pr, dir)
		pr.CloseWithError(err) // an extraction that failed stops the archiving
		done <- err
	}()
	res, err := ArchiveMaildir(ctx, st, pw, account, progress)
	pw.CloseWithError(err)
	xerr := <-done
	if err == nil {
		// The extraction's own error (a failed extraction closes the
		// pipe with it, so that the archiving gets the same).
		err = xerr
	}
	return res, err
}

// ExportResult says what an export did.
type ExportResult struct {
	Exported int
	// Dropped lists, one entry per folder in export order, the keywords
	// that a folder's 26 Maildir keyword letters could not hold: they are
	// not in the export, and the user should hear which.
	Dropped []DroppedKeywords
}

// DroppedKeywords are the keywords of one mailbox left out of its folder.
type DroppedKeywords struct {
	Mailbox  string
	Keywords []string // sorted
	Messages int      // messages that lost one or more of them
}

// String is the line the CLI prints for it.
func (d DroppedKeywords) String() string {
	return fmt.Sprintf("mailbox %s: %d keyword(s) not kept (a Maildir folder holds %d), on %d message(s): %s",
		d.Mailbox, len(d.Keywords), maxKeywords, d.Messages, strings.Join(d.Keywords, " "))
}

// ArchiveMaildir writes every mailbox of account to w as a tar archive of
// the Maildir++ tree that ExportMaildir describes, and returns the number
// of messages in it and the keywords left out.
func ArchiveMaildir(ctx context.Context, st store.Store, w io.Writer, account string, progress Progress) (ExportResult, error) {
	var res ExportResult
	if _, err := st.Account(account); err != nil {
		return res, fmt.Errorf("account %s: %w", account, err)
	}
	mboxes, err := st.Mailboxes(account)
	if err != nil {
		return res, err
	}
	lapsed, err := st.LapsedSubscriptions(account)
	if err != nil {
		return res, err
	}
	tw := tar.NewWriter(w)
	if subs := subscriptionsFile(mboxes, lapsed); subs != nil {
		if err := archiveFile(tw, "subscriptions", subs, time.Now()); err != nil {
			return res, err
		}
	}
	for _, mb := range mboxes {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		dir := "."
		if mb.Name != "INBOX" {
			dir = "." + maildirName(mb.Name)
		}
		dropped, err := exportMailbox(ctx, st, account, mb, tw, dir, func() {
			res.Exported++
			if progress != nil {
				progress(res.Exported)
			}
		})
		if len(dropped.Keywords) > 0 {
			res.Dropped = append(res.Dropped, dropped)
		}
		if err != nil {
			return res, fmt.Errorf("mailbox %s: %w", mb.Name, err)
		}
	}
	return res, tw.Close()
}

// subscriptionsFile is Dovecot's subscriptions file for the subscribed
// mailboxes and the lapsed subscriptions (names subscribed whose mailbox
// was deleted, which IMAP keeps: RFC 9051 section 6.3.7), nil without
// any. Without it, Dovecot lists no subscriptions, and a client that shows
// only subscribed folders (Thunderbird's default) shows none.
//
// The format is the one Dovecot 2.3 writes itself (subscription-file.c;
// checked against 2.3.19 with the namespace of bench/peers/peers.sh): the
// header "V\t2" and an empty line, then one name a line with each
// hierarchy level apart by a tab. Dovecot joins the levels with the
// layout's separator ('.' for Maildir++) into a storage name, and decodes
// that as it decodes a folder's directory name; so each level is written
// as in the folder's name (maildirName: modified UTF-7, '.' encoded), not
// in UTF-8. UTF-8 only seems to work: a name that is valid modified UTF-7
// as it stands ("&AOQ-") or has a '.' ("go.dev", which becomes two
// levels) would name another mailbox than its folder.
func subscriptionsFile(mboxes []store.Mailbox, lapsed []string) []byte {
	var names []string
	for _, mb := range mboxes {
		if mb.Subscribed {
			names = append(names, mb.Name)
		}
	}
	names = append(names, lapsed...)
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("V\t2\n\n")
	for _, name := range names {
		for i, level := range strings.Split(maildirName(name), ".") {
			if i > 0 {
				b.WriteByte('\t')
			}
			b.WriteString(tabEscape(level))
		}
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// tabEscape escapes as Dovecot's str_append_tabescaped does, which its
// reader of the subscriptions file undoes: a level's own tab (or line
// end) must not split it. Modified UTF-7 leaves control characters as
// they are, so a name that has them (IMAP does not forbid them all) still
// reads back.
var tabEscape = strings.NewReplacer("\x01", "\x011", "\t", "\x01t", "\r", "\x01r", "\n", "\x01n").Replace

// tabUnescape undoes tabEscape, for readSubscriptions.
var tabUnescape = strings.NewReplacer("\x011", "\x01", "\x01t", "\t", "\x01r", "\r", "\x01n", "\n").Replace

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

// exportMailbox archives one mailbox as the folder dir; done is called
// per message. It returns the keywords it left out (see keywordLetters).
func exportMailbox(ctx context.Context, st store.Store, account string, mb store.Mailbox, tw *tar.Writer, dir string, done func()) (DroppedKeywords, error) {
	dropped := DroppedKeywords{Mailbox: mb.Name}
	now := time.Now()
	for _, sub := range []string{"cur", "new", "tmp"} {
		h := &tar.Header{Typeflag: tar.TypeDir, Name: path.Join(dir, sub) + "/", Mode: 0o700, ModTime: now}
		if err := tw.WriteHeader(h); err != nil {
			return dropped, err
		}
	}
	if mb.Name != "INBOX" {
		// Maildir++ marks subfolders with an empty maildirfolder file.
		if err := archiveFile(tw, path.Join(dir, "maildirfolder"), nil, now); err != nil {
			return dropped, err
		}
	}
	msgs, err := st.Messages(account, mb.Name)
	if err != nil {
		return dropped, err
	}
	kw, left := keywordLetters(msgs)
	if len(left) > 0 {
		dropped.Keywords = left
		dropped.Messages = lostKeywords(msgs, kw)
	}
	if kwf := keywordsFile(kw); kwf != nil {
		if err := archiveFile(tw, path.Join(dir, "dovecot-keywords"), kwf, now); err != nil {
			return dropped, err
		}
	}
	for _, m := range msgs {
		if err := ctx.Err(); err != nil {
			return dropped, err
		}
		// The UID is zero-padded to its 10 digits at most, so that names
		// with the same internal date sort in UID order even as strings.
		name := fmt.Sprintf("%d.M%dU%010d.posthorn:2,%s", m.InternalDate.Unix(), mb.ID, m.UID, flagLetters(m.Flags, kw))
		if err := archiveMessage(st, m, tw, path.Join(dir, "cur", name)); err != nil {
			return dropped, fmt.Errorf("message UID %d: %w", m.UID, err)
		}
		done()
	}
	return dropped, nil
}

// archiveFile writes a small file.
func archiveFile(tw *tar.Writer, name string, data []byte, mtime time.Time) error {
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o600, ModTime: mtime}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// archiveMessage copies one message from the store into the archive,
// with its internal date as modification time.
func archiveMessage(st store.Store, m store.Message, tw *tar.Writer, name string) error {
	b, err := st.OpenMessage(m)
	if err != nil {
		return err
	}
	defer b.Close()
	mtime := m.InternalDate
	if mtime.IsZero() {
		mtime = time.Now()
	}
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: m.Size, Mode: 0o600, ModTime: mtime, Format: tar.FormatPAX}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if _, err := io.Copy(tw, b); err != nil {
		return err
	}
	return nil
}

// ExtractMaildir writes an archive of ArchiveMaildir into dir, which
// must not exist or be empty. A message goes into tmp/ first and is then
// renamed into cur/, as the Maildir delivery protocol does, so that a
// reader of the folder never sees half a message. Only directories and
// regular files inside dir are written: anything else in the archive is
// an error.
func ExtractMaildir(r io.Reader, dir string) error {
	if err := emptyDir(dir); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("export archive: %w", err)
		}
		name := path.Clean(h.Name)
		if !filepath.IsLocal(name) {
			return fmt.Errorf("export archive: %q is outside the directory", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = root.MkdirAll(name, 0o700)
		case tar.TypeReg:
			err = extractFile(root, tr, name, h.ModTime)
		default:
			err = fmt.Errorf("export archive: %q is neither a directory nor a file", h.Name)
		}
		if err != nil {
			return err
		}
	}
}

// extractFile writes one file of the archive; a message of cur/ through
// tmp/.
func extractFile(root *os.Root, r io.Reader, name string, mtime time.Time) error {
	write := name
	folder, sub := path.Split(path.Dir(name))
	if sub == "cur" {
		write = path.Join(folder, "tmp", path.Base(name))
	}
	fh, err := root.OpenFile(write, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(fh, r)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil && !mtime.IsZero() {
		err = root.Chtimes(write, mtime, mtime)
	}
	if err == nil && write != name {
		err = root.Rename(write, name)
	}
	if err != nil {
		root.Remove(write)
	}
	return err
}

// maxKeywords is how many keywords a Maildir folder holds: Dovecot's
// dovecot-keywords maps them to the letters a..z of the file names.
const maxKeywords = 26

// keywordLetters gives the keywords of a mailbox the letters a..z: the
// most used first (ties in sorted order), so that what cannot be kept when
// a folder has more than 26 is what the fewest messages lose, not what
// sorts last. It returns the keywords left without a letter, sorted.
func keywordLetters(msgs []store.Message) (map[string]byte, []string) {
	uses := map[string]int{}
	for _, m := range msgs {
		for _, f := range m.Flags {
			if !strings.HasPrefix(f, `\`) {
				uses[f]++
			}
		}
	}
	names := make([]string, 0, len(uses))
	for k := range uses {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		if uses[names[i]] != uses[names[j]] {
			return uses[names[i]] > uses[names[j]]
		}
		return names[i] < names[j]
	})
	m := map[string]byte{}
	var left []string
	for i, k := range names {
		if i < maxKeywords {
			m[k] = 'a' + byte(i)
		} else {
			left = append(left, k)
		}
	}
	sort.Strings(left)
	return m, left
}

// lostKeywords counts the messages with a keyword that has no letter.
func lostKeywords(msgs []store.Message, kw map[string]byte) int {
	n := 0
	for _, m := range msgs {
		for _, f := range m.Flags {
			if _, ok := kw[f]; !ok && !strings.HasPrefix(f, `\`) {
				n++
				break
			}
		}
	}
	return n
}

// keywordsFile is a folder's dovecot-keywords, nil without keywords.
func keywordsFile(kw map[string]byte) []byte {
	if len(kw) == 0 {
		return nil
	}
	lines := make([]string, 0, len(kw))
	for k, c := range kw {
		lines = append(lines, fmt.Sprintf("%d %s", c-'a', k))
	}
	sort.Slice(lines, func(i, j int) bool { return kwIndex(lines[i]) < kwIndex(lines[j]) })
	return []byte(strings.Join(lines, "\n") + "\n")
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
