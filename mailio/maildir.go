package mailio

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/posthorn/posthorn/store"
)

// maildirFlags maps the letters of a Maildir "info" suffix (":2,DFRST") to
// IMAP flags. 'P' (passed, i.e. resent) has no IMAP flag and is dropped.
var maildirFlags = map[byte]string{
	'D': `\Draft`,
	'F': `\Flagged`,
	'R': `\Answered`,
	'S': `\Seen`,
	'T': `\Deleted`,
}

// maildirFolder is one folder of a Maildir++ directory.
type maildirFolder struct {
	path    string // the directory holding cur/ and new/
	mailbox string // the store's name for it
}

// ImportMaildir appends every message of a Maildir++ directory to account:
// the top level's cur/ and new/ go to INBOX, ".Sub.Folder" to
// "Sub/Folder", ".INBOX.Sub" to "INBOX/Sub" (see folderName); missing
// mailboxes are created. A folder's messages get UIDs in the order of
// their file names' delivery times, then of the rest of the names compared
// naturally (see maildirCompare). Flags come from the file names, the
// internal date from the files' modification times. Malformed messages are
// skipped and listed in Result.Errors. It is EncodeMaildir and Import
// joined by a pipe.
func ImportMaildir(ctx context.Context, st store.Store, dir, account string, progress Progress) (Result, error) {
	return pipeImport(ctx, st, account, progress, func(w io.Writer) error { return EncodeMaildir(w, dir) })
}

// readMaildir reads a Maildir++ directory into s: every folder's mailbox
// first, then the messages, folder by folder.
func readMaildir(s sink, dir string) error {
	folders, err := maildirFolders(dir)
	if err != nil {
		return err
	}
	for _, f := range folders {
		if err := s.create(f.mailbox); err != nil {
			return err
		}
	}
	for _, f := range folders {
		if more, err := readFolder(s, f); err != nil || !more {
			return err
		}
	}
	return nil
}

// maildirFolders finds the folders of a Maildir++ directory.
func maildirFolders(dir string) ([]maildirFolder, error) {
	if !isMaildir(dir) {
		return nil, fmt.Errorf("%s is not a Maildir (no cur/ and new/)", dir)
	}
	folders := []maildirFolder{{path: dir, mailbox: "INBOX"}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || len(name) < 2 || name[0] != '.' || name == ".." {
			continue
		}
		p := filepath.Join(dir, name)
		if !isMaildir(p) {
			continue
		}
		mbox, err := folderName(name[1:])
		if err != nil {
			return nil, fmt.Errorf("folder %s: %w", name, err)
		}
		folders = append(folders, maildirFolder{path: p, mailbox: mbox})
	}
	return folders, nil
}

func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err != nil || !fi.IsDir() {
			return false
		}
	}
	return true
}

// folderName turns a Maildir++ folder name ("Sub.Folder", modified UTF-7)
// into a store mailbox name ("Sub/Folder"), as Dovecot's Maildir++ layout
// with an empty namespace prefix names it: ".Sub" is the top-level "Sub"
// and ".INBOX.Sub" is "INBOX/Sub", a child of INBOX (ExportMaildir writes
// it so, and must read back the same). Courier needs nothing special: it
// shows ".Sub" as "INBOX.Sub" because its namespace prefix is "INBOX.",
// but that prefix is not in the directory name, and ".Sub" is the folder
// its user sees as a top-level one, so it becomes "Sub". A ".INBOX.Sub" is
// never Courier's top-level "Sub", so no "INBOX." is stripped. The first
// level's INBOX is case-insensitive, as in the store.
func folderName(s string) (string, error) {
	parts := strings.Split(s, ".")
	for i, p := range parts {
		d, err := decodeUTF7(p)
		if err != nil {
			return "", err
		}
		if d == "" {
			return "", fmt.Errorf("empty name component")
		}
		parts[i] = d
	}
	if strings.EqualFold(parts[0], "INBOX") {
		parts[0] = "INBOX"
	}
	return strings.Join(parts, "/"), nil
}

// maildirFile is one message file of a folder: sub is "new" or "cur".
type maildirFile struct {
	sub, name string
}

// readFolder reads the messages of one folder into s, those of new/ and cur/
// together, in the order of maildirCompare: the order of delivery. (A file
// keeps its unique name when it moves from new/ to cur/, so new/ is not
// necessarily later.)
// It returns false once the import has stopped.
func readFolder(s sink, f maildirFolder) (bool, error) {
	keywords, err := readKeywords(f.path)
	if err != nil {
		return false, err
	}
	var files []maildirFile
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(f.path, sub))
		if err != nil {
			return false, err
		}
		for _, e := range entries {
			if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				files = append(files, maildirFile{sub, e.Name()})
			}
		}
	}
	slices.SortStableFunc(files, func(x, y maildirFile) int { return maildirCompare(x.name, y.name) })
	for _, file := range files {
		where := filepath.Join(f.mailbox, file.sub, file.name)
		j, err := maildirJob(filepath.Join(f.path, file.sub, file.name), keywords)
		if err != nil {
			if !s.skip(where, err) {
				return false, nil
			}
			continue
		}
		j.where, j.mailbox = where, f.mailbox
		if !s.add(j) {
			return false, nil
		}
	}
	return true, nil
}

// maildirCompare compares Maildir file names naturally: runs of digits as
// the numbers they are, other bytes as bytes. A unique name starts with
// its delivery time in seconds ("1577872800.M55U10.posthorn",
// "1577872800.M314116P1234.host"), so that comes first, then whatever the
// writer put after it, counters and microseconds that are usually not
// zero-padded: U2 before U10, M99999 before M100000. Names that are equal
// so ("U10", "U010") are then compared as strings, so that the order is
// total.
func maildirCompare(a, b string) int {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if isDigit(a[i]) && isDigit(b[j]) {
			si, sj := i, j
			for i < len(a) && isDigit(a[i]) {
				i++
			}
			for j < len(b) && isDigit(b[j]) {
				j++
			}
			// Compare the numbers without converting them: any length.
			na, nb := strings.TrimLeft(a[si:i], "0"), strings.TrimLeft(b[sj:j], "0")
			if c := cmp.Compare(len(na), len(nb)); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			continue
		}
		if c := cmp.Compare(a[i], b[j]); c != 0 {
			return c
		}
		i, j = i+1, j+1
	}
	if c := cmp.Compare(len(a)-i, len(b)-j); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// maildirJob reads one message file.
func maildirJob(path string, keywords map[byte]string) (job, error) {
	fh, err := os.Open(path)
	if err != nil {
		return job{}, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return job{}, err
	}
	if fi.Size() > maxMessageBytes {
		return job{}, fmt.Errorf("larger than %d bytes", maxMessageBytes)
	}
	raw, err := io.ReadAll(fh)
	if err != nil {
		return job{}, err
	}
	body := crlf(raw)
	if _, err := parseHeader(body); err != nil {
		return job{}, err
	}
	return job{msg: store.NewMessage{
		Body:         body,
		Flags:        fileFlags(filepath.Base(path), keywords),
		InternalDate: fi.ModTime(),
	}}, nil
}

// fileFlags reads the flags of a Maildir file name "unique:2,FLAGS" (some
// systems write '!' or ';' for ':', where ':' is not allowed in names).
func fileFlags(name string, keywords map[byte]string) []string {
	i := strings.LastIndexAny(name, ":!;")
	if i < 0 || !strings.HasPrefix(name[i+1:], "2,") {
		return nil
	}
	var flags []string
	for _, c := range []byte(name[i+3:]) {
		if f, ok := maildirFlags[c]; ok {
			flags = append(flags, f)
		} else if k, ok := keywords[c]; ok {
			flags = append(flags, k)
		}
	}
	return flags
}

// readKeywords reads Dovecot's dovecot-keywords file ("0 Keyword" per
// line; 0 is 'a', 1 is 'b'...). A missing file means no keywords.
func readKeywords(dir string) (map[byte]string, error) {
	m := map[byte]string{}
	fh, err := os.Open(filepath.Join(dir, "dovecot-keywords"))
	if os.IsNotExist(err) {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		n, kw, ok := strings.Cut(sc.Text(), " ")
		i, err := strconv.Atoi(n)
		if !ok || err != nil || i < 0 || i >= 26 || kw == "" {
			continue
		}
		m['a'+byte(i)] = kw
	}
	return m, sc.Err()
}
