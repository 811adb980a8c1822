package mailio

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

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

// ImportMaildir appends every message of a Maildir directory to account:
// the top level's cur/ and new/ go to INBOX; in Maildir++, ".Sub.Folder"
// to "Sub/Folder" and ".INBOX.Sub" to "INBOX/Sub" (see folderName); in
// the fs layout, "Sub/Folder/cur" to "Sub/Folder" (see maildirFolders);
// missing mailboxes are created, and those the Maildir's subscription
// file names are subscribed. A folder's messages get UIDs in the order of
// their file names' delivery times, then of the rest of the names
// compared naturally (see maildirCompare). Flags come from the file
// names, the internal date from the files' modification times. Malformed
// messages, and directories that hold no folder, are skipped and listed
// in Result.Errors. It is EncodeMaildir and Import joined by a pipe.
func ImportMaildir(ctx context.Context, st store.Store, dir, account string, progress Progress) (Result, error) {
	return pipeImport(ctx, st, account, progress, func(w io.Writer) error { return EncodeMaildir(w, dir) })
}

// readMaildir reads a Maildir directory into s: every folder's mailbox
// first, then the messages, folder by folder. A directory that holds no
// folder is reported as skipped, so that what is left behind is said:
// the user retires the old server on the count printed.
func readMaildir(s sink, dir string) error {
	folders, ignored, err := maildirFolders(dir)
	if err != nil {
		return err
	}
	for _, f := range folders {
		if err := s.create(f.mailbox); err != nil {
			return err
		}
	}
	if err := readSubscriptions(s, dir, folders); err != nil {
		return err
	}
	for _, d := range ignored {
		if !s.skip(d.name, d.why) {
			return nil
		}
	}
	for _, f := range folders {
		if more, err := readFolder(s, f); err != nil || !more {
			return err
		}
	}
	return nil
}

// maildirFolders finds the folders of a Maildir directory, in both of
// Dovecot's layouts: Maildir++ (".Sub.Folder" beside cur/, the default,
// and Courier's) and fs ("Sub/Folder/cur", LAYOUT=fs), where the top
// level is INBOX either way. A folder is a directory with cur/ or new/
// (a copy may have lost the empty one: git, zip and some backup tools
// keep no empty directories). ignored lists, relative to dir, the
// directories that hold no folder.
func maildirFolders(dir string) (folders []maildirFolder, ignored []ignoredDir, err error) {
	if !isMaildir(dir) {
		return nil, nil, fmt.Errorf("%s is not a Maildir (no cur/ or new/)", dir)
	}
	folders = []maildirFolder{{path: dir, mailbox: "INBOX"}}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		name := e.Name()
		p := filepath.Join(dir, name)
		switch {
		case !e.IsDir() || name == "cur" || name == "new" || name == "tmp" || name == "." || name == "..":
		case strings.HasPrefix(name, "courierimap"):
			// Courier's keywords and ACLs, not mail.
		case name[0] == '.':
			mbox, err := folderName(name[1:])
			switch {
			case !isMaildir(p):
				ignored = append(ignored, ignoredDir{name, errNotFolder})
			case err != nil:
				ignored = append(ignored, ignoredDir{name, fmt.Errorf("not a folder name (%w): not imported", err)})
			default:
				folders = append(folders, maildirFolder{path: p, mailbox: mbox})
			}
		default:
			found, err := fsFolders(p, []string{componentName(name)}, &folders)
			if err != nil {
				return nil, nil, err
			}
			if !found {
				ignored = append(ignored, ignoredDir{name, errNotFolder})
			}
		}
	}
	return folders, ignored, nil
}

// fsFolders adds the folders at and under p, a directory of the fs
// layout whose mailbox name is the components path (each directory's
// name, modified UTF-7 decoded: dots are part of it), and reports whether
// it found any. A directory without cur/ or new/ but with folders under
// it is their parent, which Dovecot lists as \NoSelect; the store has no
// such mailbox, and creating the children makes it.
func fsFolders(p string, path []string, folders *[]maildirFolder) (bool, error) {
	if len(path) > maxFolderDepth {
		return false, nil
	}
	found := false
	if isMaildir(p) {
		*folders = append(*folders, maildirFolder{path: p, mailbox: joinFolder(path)})
		found = true
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || name == "cur" || name == "new" || name == "tmp" || name[0] == '.' {
			continue
		}
		sub, err := fsFolders(filepath.Join(p, name), append(slices.Clone(path), componentName(name)), folders)
		if err != nil {
			return false, err
		}
		found = found || sub
	}
	return found, nil
}

// ignoredDir is a directory of a Maildir that holds no folder, and why.
type ignoredDir struct {
	name string
	why  error
}

var errNotFolder = errors.New("not a Maildir folder (no cur/ or new/ in it or under it): not imported")

// maxFolderDepth bounds the fs layout's nesting, as the store bounds a
// mailbox name's levels.
const maxFolderDepth = 20

func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if fi, err := os.Stat(filepath.Join(dir, sub)); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
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
func folderName(s string) (string, error) { return folderFrom(strings.Split(s, ".")) }

// folderFrom turns the levels of a folder name, each in modified UTF-7,
// into a store mailbox name.
func folderFrom(levels []string) (string, error) {
	for i, p := range levels {
		if p == "" {
			return "", errors.New("empty name component")
		}
		levels[i] = componentName(p)
	}
	return joinFolder(levels), nil
}

// componentName decodes one level of a folder name from modified UTF-7.
// One that is not valid modified UTF-7 (made by a script, or another
// server) is taken as it is written, as Dovecot lists it, rather than
// failing the whole import.
func componentName(p string) string {
	if d, err := decodeUTF7(p); err == nil && d != "" {
		return d
	}
	if !utf8.ValidString(p) {
		return strings.ToValidUTF8(p, "\uFFFD")
	}
	return p
}

// joinFolder joins the levels of a folder name; the first level's INBOX
// is case-insensitive, as in the store.
func joinFolder(parts []string) string {
	if strings.EqualFold(parts[0], "INBOX") {
		parts[0] = "INBOX"
	}
	return strings.Join(parts, "/")
}

// readSubscriptions subscribes the folders that the Maildir's
// subscription file names: Dovecot's "subscriptions" (version 2: "V\t2",
// an empty line, then a name per line with its levels separated by tabs;
// version 1: a name per line with "." between levels, as in Maildir++;
// see subscriptionsFile),
// or Courier's "courierimapsubscribed" ("INBOX.Sub.Folder"). Names are
// in modified UTF-7. Only folders found are subscribed. Without a file,
// nothing changes (the account's defaults stay subscribed).
func readSubscriptions(s sink, dir string, folders []maildirFolder) error {
	found := map[string]bool{}
	for _, f := range folders {
		found[f.mailbox] = true
	}
	for _, file := range []string{"subscriptions", "courierimapsubscribed"} {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
		v2 := len(lines) > 0 && lines[0] == "V\t2"
		if v2 {
			lines = lines[1:]
		}
		for _, l := range lines {
			if l == "" {
				continue
			}
			var name string
			switch {
			case v2:
				// Levels apart by tabs, each escaped as subscriptionsFile
				// writes it (Dovecot's tab escaping).
				levels := strings.Split(l, "\t")
				for i, p := range levels {
					levels[i] = tabUnescape(p)
				}
				name, _ = folderFrom(levels)
			case file == "courierimapsubscribed" && strings.HasPrefix(strings.ToUpper(l), "INBOX."):
				// Courier's names have its namespace prefix "INBOX."; its
				// ".Sub" folder is "INBOX.Sub" there (see folderName).
				name, _ = folderName(l[len("INBOX."):])
			default:
				name, _ = folderName(l)
			}
			if found[name] {
				if err := s.subscribe(name); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// maildirFile is one message file of a folder: sub is "new" or "cur".
type maildirFile struct {
	sub, name string
	// uid is its UID in Dovecot's dovecot-uidlist, 0 if not listed.
	uid uint32
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
	uids, err := readUIDList(f.path)
	if err != nil {
		return false, err
	}
	var files []maildirFile
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(f.path, sub))
		if os.IsNotExist(err) {
			continue // a folder with one of the two (see isMaildir)
		}
		if err != nil {
			return false, err
		}
		for _, e := range entries {
			if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				base, _, _ := splitInfo(e.Name())
				files = append(files, maildirFile{sub: sub, name: e.Name(), uid: uids[base]})
			}
		}
	}
	slices.SortStableFunc(files, func(x, y maildirFile) int {
		// Dovecot's UIDs first (the order its clients saw), then the
		// files it had not numbered yet, by name.
		switch {
		case x.uid != 0 && y.uid != 0:
			return cmp.Compare(x.uid, y.uid)
		case x.uid != 0 || y.uid != 0:
			return cmp.Compare(y.uid, x.uid) // the listed one first
		}
		return maildirCompare(x.name, y.name)
	})
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
	body := crlf(stripFromLine(raw))
	if _, err := parseHeader(body); err != nil {
		return job{}, err
	}
	return job{msg: store.NewMessage{
		Body:         body,
		Flags:        fileFlags(filepath.Base(path), keywords),
		InternalDate: fi.ModTime(),
	}}, nil
}

// stripFromLine removes an mbox "From " separator line at the start of a
// message file, as maildirs converted from mbox (mb2md, formail) have and
// Dovecot serves without it. "From:" and the obsolete "From :" are a
// header field, not a separator.
func stripFromLine(raw []byte) []byte {
	if !bytes.HasPrefix(raw, []byte("From ")) {
		return raw
	}
	line, rest, _ := bytes.Cut(raw, []byte("\n"))
	if bytes.HasPrefix(bytes.TrimLeft(line[len("From "):], " \t"), []byte(":")) {
		return raw
	}
	return rest
}

// fileFlags reads the flags of a Maildir file name (see splitInfo).
func fileFlags(name string, keywords map[byte]string) []string {
	_, info, ok := splitInfo(name)
	if !ok {
		return nil
	}
	var flags []string
	for _, c := range []byte(info) {
		if f, ok := maildirFlags[c]; ok {
			flags = append(flags, f)
		} else if k, ok := keywords[c]; ok {
			flags = append(flags, k)
		}
	}
	return flags
}

// readUIDList reads the UIDs of Dovecot's dovecot-uidlist ("3 V... N..."
// then "UID [fields] :basename" a line, or "UID basename" in version 1),
// by the file's base name (before ":2,"): the order of a folder's messages
// on the old server, which the file names do not always give (deliveries
// of one second by different processes). Without a list, the names give
// the order; a line that does not parse is left out.
func readUIDList(dir string) (map[string]uint32, error) {
	data, err := os.ReadFile(filepath.Join(dir, "dovecot-uidlist"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	uids := map[string]uint32{}
	lines := strings.Split(string(data), "\n")
	for _, l := range lines[1:] { // the first line is the header
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		uid, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			continue
		}
		name := f[len(f)-1]
		if i := strings.Index(l, " :"); i >= 0 {
			name = strings.TrimSpace(l[i+2:])
		}
		if uid > 0 {
			uids[name] = uint32(uid)
		}
	}
	return uids, nil
}

// splitInfo cuts a Maildir file name "unique:2,FLAGS" into its unique
// part and its flags; ok is false when it has no ":2," (some systems
// write '!' or ';' for ':', where ':' is not allowed in names), and then
// the whole name is the unique part.
func splitInfo(name string) (base, flags string, ok bool) {
	if i := strings.LastIndexAny(name, ":!;"); i >= 0 && strings.HasPrefix(name[i+1:], "2,") {
		return name[:i], name[i+3:], true
	}
	return name, "", false
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
