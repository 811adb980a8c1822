// Package admin carries out the administration commands of the CLI
// (domains, users, aliases, the queue, DKIM keys, backups...). The same code
// runs in two places: inside `posthorn serve`, reached through the control
// socket, and in the CLI process itself when no server runs and the CLI
// opens the store directly. Either way a command sees an Env and writes its
// output as text.
package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/net/idna"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/internal/smtpaddr"
	"github.com/posthorn/posthorn/mda"
	"github.com/posthorn/posthorn/store"
)

// Request is one command with its arguments, as the CLI parsed them.
type Request struct {
	Command string   // "domain add", "user list", ...
	Args    []string // positional arguments
	// Hash is a password hash made by the CLI (user add, user passwd):
	// the password itself never leaves the CLI process.
	Hash    string `json:",omitempty"`
	Mailbox string `json:",omitempty"` // import --mailbox
	User    string `json:",omitempty"` // import/export --user
	Force   bool   `json:",omitempty"`

	// Upload and Download are the command's data: what the CLI read for
	// an import, and what it is to write for a backup or an export. The
	// CLI opens the files itself, with its user's rights, and the server,
	// sandboxed under a user of its own, never sees their paths: the
	// control socket carries the data (see package control). Without a
	// server they are the CLI's own pipes and files.
	Upload   io.Reader `json:"-"`
	Download io.Writer `json:"-"`
	// HasUpload and HasDownload tell the server that the data follow the
	// request, or are to follow its answer.
	HasUpload   bool `json:",omitempty"`
	HasDownload bool `json:",omitempty"`
}

// Queue is the running outbound queue, when there is one.
type Queue interface {
	Retry(id string) error // "" retries every entry
	Drop(id string) error
	Delivering(id string) bool // a worker is delivering the entry now
}

// Env is what a command works on.
type Env struct {
	Store  store.Store
	Config *config.Config
	Queue  Queue // nil when the server is not running
	Logger *slog.Logger
	// Terminal, when set, is where progress bars are drawn (the CLI on a
	// terminal, without a server).
	Terminal io.Writer
}

// UsageError is a mistake in the command line; the CLI prints it as is.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usage(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

type handler func(ctx context.Context, env *Env, req Request, out io.Writer) error

// commands maps each command to its handler. Commands registered in other
// files of this package add themselves in init-free tables merged here.
func commands() map[string]handler {
	m := map[string]handler{
		"domain add":   domainAdd,
		"domain del":   domainDel,
		"domain list":  domainList,
		"user add":     userAdd,
		"user passwd":  userPasswd,
		"user del":     userDel,
		"user list":    userList,
		"user quota":   userQuota,
		"user disable": userDisable,
		"user enable":  userEnable,
		"alias add":    aliasAdd,
		"alias del":    aliasDel,
		"alias list":   aliasList,
		"queue list":   queueList,
		"queue retry":  queueRetry,
		"queue drop":   queueDrop,
		"backup":       backup,
	}
	for k, v := range extraCommands() {
		m[k] = v
	}
	return m
}

// Execute runs one command.
func Execute(ctx context.Context, env *Env, req Request, out io.Writer) error {
	h, ok := commands()[req.Command]
	if !ok {
		return usage("unknown command %q", req.Command)
	}
	return h(ctx, env, req, out)
}

func nargs(req Request, min, max int, what string) error {
	if len(req.Args) < min || (max >= 0 && len(req.Args) > max) {
		if what == "" {
			return usage("usage: posthorn %s (it takes no arguments)", req.Command)
		}
		return usage("usage: posthorn %s %s", req.Command, what)
	}
	return nil
}

// Address checks and lower-cases a mail address "local@domain".
func Address(s string) (string, error) {
	if s == "" || strings.ContainsAny(s, " \t\r\n<>,;\"") {
		return "", fmt.Errorf("%q is not a valid address", s)
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s {
		return "", fmt.Errorf("%q is not a valid address", s)
	}
	local, domain, ok := strings.Cut(strings.ToLower(s), "@")
	if !ok || local == "" {
		return "", fmt.Errorf("%q is not a valid address", s)
	}
	d, err := Domain(domain)
	if err != nil {
		return "", fmt.Errorf("%q is not a valid address: %v", s, err)
	}
	return local + "@" + d, nil
}

// localAddress is Address for an address of ours (an account, an alias):
// old relays route on '%' and '!' (RFC 5321 appendix C), delivery here
// never does, so no mail would ever reach such an address. (Another
// host's may have them: an alias target, say.)
func localAddress(s string) (string, error) {
	a, err := Address(s)
	if err == nil && strings.ContainsAny(a[:strings.LastIndexByte(a, '@')], "%!") {
		return "", fmt.Errorf("%q is not a valid address: mail is never delivered to a local part with '%%' or '!'", s)
	}
	return a, err
}

// Domain checks and lower-cases a domain name. One with non-ASCII labels
// (bücher.example) is kept in A-labels (xn--bcher-kva.example), the form
// of DNS, as delivery reads addresses.
func Domain(s string) (string, error) {
	d := strings.TrimSuffix(strings.ToLower(s), ".")
	if strings.ContainsFunc(d, func(r rune) bool { return r >= 0x80 }) {
		a, err := idna.Lookup.ToASCII(d)
		if err != nil {
			return "", fmt.Errorf("%q is not a valid domain name: %v", s, err)
		}
		d = a
	}
	if !strings.Contains(d, ".") {
		return "", fmt.Errorf("%q is not a valid domain name", s)
	}
	// A top-level label is never all digits (RFC 3696 section 2): that is
	// an IP address, which mail reaches as an address literal only.
	if tld := d[strings.LastIndexByte(d, '.')+1:]; tld != "" && strings.Trim(tld, "0123456789") == "" {
		return "", fmt.Errorf("%q is not a valid domain name (an IP address?)", s)
	}
	if smtpaddr.NameProblem(d, false) != "" {
		return "", fmt.Errorf("%q is not a valid domain name", s)
	}
	if strings.Contains(d, "xn--") {
		if _, err := idna.Lookup.ToUnicode(d); err != nil {
			return "", fmt.Errorf("%q is not a valid domain name: %v", s, err)
		}
	}
	return d, nil
}

func domainAdd(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 1, 1, "NAME"); err != nil {
		return err
	}
	d, err := Domain(req.Args[0])
	if err != nil {
		return err
	}
	if err := env.Store.AddDomain(d); err != nil {
		if errors.Is(err, store.ErrExists) {
			return fmt.Errorf("domain %s %w", d, store.ErrExists) // "already exists"
		}
		return err
	}
	fmt.Fprintf(out, "domain %s added\n", d)
	return domainAdded(ctx, env, d, out)
}

func domainDel(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 1, 1, "NAME"); err != nil {
		return err
	}
	d, err := Domain(req.Args[0])
	if err != nil {
		return err
	}
	if err := env.Store.DeleteDomain(d); err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrNoSuchDomain) {
			return fmt.Errorf("domain %s is not served here", d)
		}
		return err
	}
	fmt.Fprintf(out, "domain %s deleted\n", d)
	return nil
}

func domainList(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 0, 0, ""); err != nil {
		return err
	}
	ds, err := env.Store.Domains()
	if err != nil {
		return err
	}
	for _, d := range ds {
		fmt.Fprintln(out, d)
	}
	return nil
}

func userAdd(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 1, 1, "ADDRESS"); err != nil {
		return err
	}
	a, err := localAddress(req.Args[0])
	if err != nil {
		return err
	}
	if req.Hash == "" {
		return usage("a password is required")
	}
	if targets, err := env.Store.Alias(a); err == nil {
		return fmt.Errorf("%s is an alias (-> %s): delete it first (posthorn alias del %s)", a, strings.Join(targets, ", "), a)
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err := env.Store.AddAccount(a, req.Hash); err != nil {
		switch {
		case errors.Is(err, store.ErrNoSuchDomain):
			return fmt.Errorf("domain of %s is not served here (add it with: posthorn domain add %s)", a, a[strings.IndexByte(a, '@')+1:])
		case errors.Is(err, store.ErrExists):
			return fmt.Errorf("user %s already exists", a)
		}
		return err
	}
	if q := env.Config.Limits.DefaultQuotaBytes; q > 0 {
		if err := env.Store.SetQuota(a, q); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "user %s added\n", a)
	return nil
}

func userPasswd(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 1, 1, "ADDRESS"); err != nil {
		return err
	}
	a, err := Address(req.Args[0])
	if err != nil {
		return err
	}
	if req.Hash == "" {
		return usage("a password is required")
	}
	if err := env.Store.SetPasswordHash(a, req.Hash); err != nil {
		return noUser(a, err)
	}
	fmt.Fprintf(out, "password of %s changed\n", a)
	return nil
}

// userQuota sets or clears an account's quota: SIZE is bytes, with an
// optional K, M, G or T (powers of 1024, as user list prints them), or 0
// or "none" for no quota. Mail already stored stays; once over its quota
// an account refuses new mail (452 4.2.2 and a later retry, see mda).
func userQuota(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 2, 2, "ADDRESS SIZE"); err != nil {
		return err
	}
	a, err := Address(req.Args[0])
	if err != nil {
		return err
	}
	q, err := ParseSize(req.Args[1])
	if err != nil {
		return err
	}
	if err := env.Store.SetQuota(a, q); err != nil {
		return noUser(a, err)
	}
	acct, err := env.Store.Account(a)
	if err != nil {
		return noUser(a, err)
	}
	switch {
	case q == 0:
		fmt.Fprintf(out, "%s has no quota (%s used)\n", a, ByteSize(acct.UsedBytes))
	case acct.UsedBytes > q:
		fmt.Fprintf(out, "quota of %s set to %s; %s used already: new mail waits until some is deleted\n", a, ByteSize(q), ByteSize(acct.UsedBytes))
	default:
		fmt.Fprintf(out, "quota of %s set to %s (%s used)\n", a, ByteSize(q), ByteSize(acct.UsedBytes))
	}
	return nil
}

// userDisable stops an account from logging in and receiving mail (it is
// then unknown to SMTP, 550 5.1.1), ends its IMAP and POP3 sessions, and
// its open submission sessions send nothing more; its mail stays.
// userEnable undoes it.
func userDisable(ctx context.Context, env *Env, req Request, out io.Writer) error {
	return setDisabled(env, req, out, true)
}

func userEnable(ctx context.Context, env *Env, req Request, out io.Writer) error {
	return setDisabled(env, req, out, false)
}

func setDisabled(env *Env, req Request, out io.Writer, disabled bool) error {
	if err := nargs(req, 1, 1, "ADDRESS"); err != nil {
		return err
	}
	a, err := Address(req.Args[0])
	if err != nil {
		return err
	}
	if err := env.Store.SetDisabled(a, disabled); err != nil {
		return noUser(a, err)
	}
	if disabled {
		fmt.Fprintf(out, "%s disabled: no logins, no new mail (550 5.1.1); its mail is kept\n", a)
		noteAliases(env, a, out)
	} else {
		fmt.Fprintf(out, "%s enabled\n", a)
	}
	return nil
}

// ParseSize reads a size in bytes: digits with an optional K, M, G or T
// (powers of 1024; a trailing B or iB is allowed), or "none" for 0.
func ParseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if t == "NONE" {
		return 0, nil
	}
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	shift := 0
	if n := len(t); n > 0 {
		if i := strings.IndexByte("KMGT", t[n-1]); i >= 0 {
			shift, t = 10*(i+1), t[:n-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("%q is not a size (bytes, or a number with K, M, G or T; 0 or none for no quota)", s)
	}
	return n << shift, nil
}

func noUser(a string, err error) error {
	if errors.Is(err, store.ErrNoSuchAccount) || errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no user %s", a)
	}
	return err
}

func userDel(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 1, 1, "ADDRESS"); err != nil {
		return err
	}
	a, err := Address(req.Args[0])
	if err != nil {
		return err
	}
	if err := env.Store.DeleteAccount(a); err != nil {
		return noUser(a, err)
	}
	fmt.Fprintf(out, "user %s deleted with its mail\n", a)
	noteAliases(env, a, out)
	return nil
}

// noteAliases says which aliases lead to addr, now that it takes no mail:
// delivery leaves it out of them (or refuses the alias when nothing else
// is left).
func noteAliases(env *Env, addr string, out io.Writer) {
	all, err := env.Store.Aliases()
	if err != nil {
		return
	}
	var srcs []string
	for src, targets := range all {
		for _, t := range targets {
			if strings.EqualFold(t, addr) {
				srcs = append(srcs, src)
				break
			}
		}
	}
	if len(srcs) > 0 {
		sort.Strings(srcs)
		fmt.Fprintf(out, "note: aliases still lead to %s (it is left out of them): %s\n", addr, strings.Join(srcs, ", "))
	}
}

func userList(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 0, 0, ""); err != nil {
		return err
	}
	accts, err := env.Store.Accounts()
	if err != nil {
		return err
	}
	sort.Slice(accts, func(i, j int) bool { return accts[i].Address < accts[j].Address })
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tUSED\tQUOTA\tSTATE")
	for _, a := range accts {
		quota, state := "-", "active"
		if a.QuotaBytes > 0 {
			quota = ByteSize(a.QuotaBytes)
		}
		if a.Disabled {
			state = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Address, ByteSize(a.UsedBytes), quota, state)
	}
	return tw.Flush()
}

func ByteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

func aliasAdd(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 2, -1, "ADDRESS TARGET..."); err != nil {
		return err
	}
	src, err := aliasSource(req.Args[0])
	if err != nil {
		return err
	}
	dom := src[strings.IndexByte(src, '@')+1:]
	if ok, err := env.Store.HasDomain(dom); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("domain %s is not served here", dom)
	}
	var targets []string
	for _, t := range req.Args[1:] {
		a, err := Address(t)
		if err != nil {
			return err
		}
		if a == src {
			return fmt.Errorf("alias %s cannot point to itself", src)
		}
		targets = append(targets, a)
	}
	if err := checkAlias(env, src, targets); err != nil {
		return err
	}
	old, err := env.Store.Alias(src)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err := env.Store.AddAlias(src, targets); err != nil {
		return err
	}
	if len(old) > 0 {
		fmt.Fprintf(out, "alias %s -> %s (replaces -> %s)\n", src, strings.Join(targets, ", "), strings.Join(old, ", "))
		return nil
	}
	fmt.Fprintf(out, "alias %s -> %s\n", src, strings.Join(targets, ", "))
	return nil
}

// withAlias is a store as it would be with one more alias.
type withAlias struct {
	store.Store
	src     string
	targets []string
}

func (w withAlias) Alias(addr string) ([]string, error) {
	if addr == w.src {
		return w.targets, nil
	}
	return w.Store.Alias(addr)
}

// checkAlias refuses an alias the delivery agent would never use (its
// address is an account's) or could not follow: a target in a domain of
// ours that leads nowhere, or a loop. Mail to it would otherwise be
// refused at RCPT time, long after the mistake.
func checkAlias(env *Env, src string, targets []string) error {
	st := env.Store
	if !strings.HasPrefix(src, "@") {
		if _, err := st.Account(src); err == nil {
			return fmt.Errorf("%s is an account: an alias of the same address would never be used", src)
		} else if !errors.Is(err, store.ErrNoSuchAccount) && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	// The server's own name, as delivery resolves it: postmaster@ the
	// host name leads back into our domains.
	agent := &mda.Agent{Store: withAlias{st, src, targets}}
	if env.Config != nil {
		agent.Hostname = env.Config.Hostname
	}
	for _, t := range targets {
		_, err := agent.Resolve(t)
		switch {
		case err == nil, errors.Is(err, mda.ErrNotOurDomain):
		case errors.Is(err, mda.ErrUnknownUser):
			return fmt.Errorf("target %s: no such account or alias here", t)
		case errors.Is(err, mda.ErrAliasLoop):
			return fmt.Errorf("alias %s -> %s would make a loop (%v)", src, t, err)
		case errors.Is(err, mda.ErrBadAddress):
			return fmt.Errorf("target %s: not an address mail is delivered to", t)
		default:
			return err
		}
	}
	return nil
}

// aliasSource is the address of an alias, or "@domain" for a catch-all,
// in the form the store keeps.
func aliasSource(arg string) (string, error) {
	src := strings.ToLower(arg)
	if strings.HasPrefix(src, "@") {
		d, err := Domain(src[1:])
		if err != nil {
			return "", err
		}
		return "@" + d, nil
	}
	return localAddress(src)
}

func aliasDel(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 1, 1, "ADDRESS"); err != nil {
		return err
	}
	src, err := aliasSource(req.Args[0])
	if err != nil {
		return err
	}
	if err := env.Store.DeleteAlias(src); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no alias %s", src)
		}
		return err
	}
	fmt.Fprintf(out, "alias %s deleted\n", src)
	return nil
}

func aliasList(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 0, 1, "[ADDRESS]"); err != nil {
		return err
	}
	all, err := env.Store.Aliases()
	if err != nil {
		return err
	}
	keys := make([]string, 0, len(all))
	if len(req.Args) == 1 {
		// One alias, which must exist: a typo is not an empty list.
		src, err := aliasSource(req.Args[0])
		if err != nil {
			return err
		}
		if _, ok := all[src]; !ok {
			return fmt.Errorf("no alias %s", src)
		}
		keys = append(keys, src)
	}
	for k := range all {
		if len(req.Args) == 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(out, "%s -> %s\n", k, strings.Join(all[k], ", "))
	}
	return nil
}

func queueList(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 0, 0, ""); err != nil {
		return err
	}
	entries, err := env.Store.QueueEntries()
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		fmt.Fprintln(out, "queue is empty")
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAGE\tFROM\tRECIPIENTS\tATTEMPTS\tNEXT TRY\tLAST ERROR")
	for _, e := range entries {
		var rcpts []string
		for _, r := range e.Recipients {
			if !r.Done {
				rcpts = append(rcpts, r.Address)
			}
		}
		from := e.From
		if from == "" {
			from = "<>"
		}
		next := "now"
		if d := e.NextAttempt.Sub(now); d > 0 {
			next = "in " + d.Round(time.Second).String()
		}
		if env.Queue != nil && env.Queue.Delivering(e.ID) {
			next = "delivering"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", e.ID, now.Sub(e.Created).Round(time.Second),
			from, strings.Join(rcpts, ","), e.Attempts, next, oneLine(e.LastError, 80))
	}
	return tw.Flush()
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max-1] + "…"
	}
	return s
}

func queueRetry(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 0, 1, "[ID]"); err != nil {
		return err
	}
	id := ""
	if len(req.Args) == 1 {
		id = req.Args[0]
	}
	if env.Queue != nil {
		if err := env.Queue.Retry(id); err != nil {
			return queueErr(id, err)
		}
	} else {
		entries, err := env.Store.QueueEntries()
		if err != nil {
			return err
		}
		found := false
		for _, e := range entries {
			if id != "" && e.ID != id {
				continue
			}
			found = true
			e.NextAttempt = time.Now()
			if err := env.Store.UpdateQueueEntry(e); err != nil {
				return err
			}
		}
		if id != "" && !found {
			return fmt.Errorf("no queue entry %s", id)
		}
	}
	when := "now"
	if env.Queue == nil {
		when = "as soon as the server runs" // the store is ours: it is stopped
	}
	if id == "" {
		fmt.Fprintf(out, "every queue entry will be retried %s\n", when)
	} else {
		fmt.Fprintf(out, "queue entry %s will be retried %s\n", id, when)
	}
	return nil
}

func queueErr(id string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no queue entry %s", id)
	}
	return err
}

func queueDrop(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 1, 1, "ID"); err != nil {
		return err
	}
	id := req.Args[0]
	var err error
	if env.Queue != nil {
		err = env.Queue.Drop(id)
	} else {
		err = env.Store.DeleteQueueEntry(id)
	}
	if err != nil {
		return queueErr(id, err)
	}
	fmt.Fprintf(out, "queue entry %s dropped\n", id)
	return nil
}
