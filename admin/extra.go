package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/posthorn/posthorn/certs"
	"github.com/posthorn/posthorn/dkim"
	"github.com/posthorn/posthorn/mailio"
	"github.com/posthorn/posthorn/resolver"
	"github.com/posthorn/posthorn/store"
	"github.com/posthorn/posthorn/zone"
)

// extraCommands are the commands built on other packages (DKIM, DNS,
// import/export).
func extraCommands() map[string]handler {
	return map[string]handler{
		"dkim show":      dkimShow,
		"dkim rotate":    dkimRotate,
		"dkim activate":  dkimActivate,
		"dns":            dnsRecords,
		"doctor":         doctor,
		"import mbox":    importStream,
		"import maildir": importStream,
		"export maildir": exportMaildir,
	}
}

// domainAdded runs after a domain is added: it creates the DKIM keys.
func domainAdded(ctx context.Context, env *Env, domain string, out io.Writer) error {
	keys, err := dkim.Ensure(env.Store, domain)
	if err != nil {
		return fmt.Errorf("DKIM keys for %s: %w", domain, err)
	}
	for _, k := range keys {
		fmt.Fprintf(out, "DKIM key %s (%s) created\n", k.Selector, k.Algorithm)
	}
	return nil
}

// servedDomain checks that a domain argument is one we serve.
func servedDomain(env *Env, name string) (string, error) {
	d, err := Domain(name)
	if err != nil {
		return "", err
	}
	ok, err := env.Store.HasDomain(d)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("domain %s is not served here", d)
	}
	return d, nil
}

// domainsArg is the one domain named, or every domain we serve.
func domainsArg(env *Env, req Request) ([]string, error) {
	if err := nargs(req, 0, 1, "[DOMAIN]"); err != nil {
		return nil, err
	}
	if len(req.Args) == 1 {
		d, err := servedDomain(env, req.Args[0])
		return []string{d}, err
	}
	ds, err := env.Store.Domains()
	if err == nil && len(ds) == 0 {
		err = errors.New("no domains are served yet (posthorn domain add NAME)")
	}
	return ds, err
}

// domainKeys reads the DOMAIN argument of a dkim command, a domain we
// serve, and its keys.
func domainKeys(env *Env, req Request) (string, []store.DKIMKey, error) {
	if err := nargs(req, 1, 1, "DOMAIN"); err != nil {
		return "", nil, err
	}
	d, err := servedDomain(env, req.Args[0])
	if err != nil {
		return "", nil, err
	}
	keys, err := env.Store.DKIMKeys(d)
	return d, keys, err
}

func dkimShow(ctx context.Context, env *Env, req Request, out io.Writer) error {
	d, keys, err := domainKeys(env, req)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return fmt.Errorf("domain %s has no DKIM keys (posthorn dkim rotate %s makes them)", d, d)
	}
	for _, k := range keys {
		state := "active"
		switch {
		case k.Pending:
			state = "new, not signing yet: publish it, then posthorn dkim activate " + d
		case !k.Active:
			state = "retired, keep published until mail signed with it is delivered"
		}
		fmt.Fprintf(out, "; %s %s, created %s, %s\n", k.Algorithm, k.Selector, k.Created.Format(time.DateOnly), state)
		name, value, err := dkim.DNSRecord(k)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, dkim.ZoneLine(name, value))
	}
	return nil
}

func dkimRotate(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 1, 1, "DOMAIN"); err != nil {
		return err
	}
	d, err := servedDomain(env, req.Args[0])
	if err != nil {
		return err
	}
	keys, err := dkim.Rotate(env.Store, d)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "new DKIM keys for %s; publish them, and once they are visible run posthorn dkim activate %s (mail is signed with the current keys until then):\n", d, d)
	for _, k := range keys {
		name, value, err := dkim.DNSRecord(k)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, dkim.ZoneLine(name, value))
	}
	return nil
}

// dkimActivate makes the keys dkim rotate made sign, once DNS shows their
// records as they are to be (unless --force): a signature whose key
// receivers cannot find fails, and under DMARC p=reject so would the mail.
func dkimActivate(ctx context.Context, env *Env, req Request, out io.Writer) error {
	d, keys, err := domainKeys(env, req)
	if err != nil {
		return err
	}
	pending := dkim.Pending(keys)
	if len(pending) == 0 {
		return fmt.Errorf("%s has no new DKIM keys to activate (posthorn dkim rotate %s makes them)", d, d)
	}
	if !req.Force {
		res := resolver.New(env.Config.Outbound.DNSServer)
		var missing []string
		for _, k := range pending {
			name, value, err := dkim.DNSRecord(k)
			if err != nil {
				return err
			}
			c := zone.CheckRecord(ctx, res, zone.Record{Name: strings.TrimSuffix(name, ".") + ".", Type: "TXT", Value: value})
			if c.Status != zone.StatusOK {
				missing = append(missing, fmt.Sprintf("%s (%s)", name, c.Detail))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("not published yet, nothing changed: %s; publish them and wait for DNS, or use --force", strings.Join(missing, ", "))
		}
	}
	active, err := dkim.Activate(env.Store, d)
	if err != nil {
		return err
	}
	for _, k := range active {
		fmt.Fprintf(out, "%s signs %s mail from now on (%s)\n", k.Selector, d, k.Algorithm)
	}
	fmt.Fprintln(out, "the old keys stay published: remove their records once mail signed with them has arrived")
	return nil
}

func dnsRecords(ctx context.Context, env *Env, req Request, out io.Writer) error {
	domains, err := domainsArg(env, req)
	if err != nil {
		return err
	}
	for _, d := range domains {
		keys, err := env.Store.DKIMKeys(d)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "; ---- %s ----\n", d)
		io.WriteString(out, zone.Zone(zone.Records(env.Config, d, keys)))
	}
	return nil
}

func doctor(ctx context.Context, env *Env, req Request, out io.Writer) error {
	domains, err := domainsArg(env, req)
	if err != nil {
		return err
	}
	entries, err := env.Store.QueueEntries()
	if err != nil {
		return err
	}
	expiry, err := certs.Expiry(env.Config)
	if err != nil {
		expiry = time.Time{}
	}
	res := resolver.New(env.Config.Outbound.DNSServer)
	bad := 0
	for _, d := range domains {
		keys, err := env.Store.DKIMKeys(d)
		if err != nil {
			return err
		}
		for _, c := range zone.Doctor(ctx, env.Config, res, d, keys, zone.SummarizeQueue(entries), expiry) {
			fmt.Fprintf(out, "%-8s %s: %s\n", c.Status, c.Name, c.Detail)
			if c.Fix != "" {
				fmt.Fprintf(out, "         fix: %s\n", c.Fix)
			}
			if c.Status == zone.StatusMissing || c.Status == zone.StatusWrong || c.Status == zone.StatusUnknown {
				bad++
			}
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d problem(s) found", bad)
	}
	return nil
}

// progress returns a progress callback drawing a bar on env.Terminal, or
// nothing when the command does not run on a terminal.
func progress(env *Env, what string) (mailio.Progress, func()) {
	if env.Terminal == nil {
		return nil, func() {}
	}
	bar := progressbar.NewOptions(-1, progressbar.OptionSetWriter(env.Terminal),
		progressbar.OptionSetDescription(what), progressbar.OptionShowCount(),
		progressbar.OptionThrottle(100*time.Millisecond))
	return func(n int) { bar.Set(n) }, func() { bar.Finish(); fmt.Fprintln(env.Terminal) }
}

func account(env *Env, req Request) (string, error) {
	if req.User == "" {
		return "", usage("--user ADDRESS is required")
	}
	a, err := Address(req.User)
	if err != nil {
		return "", err
	}
	if _, err := env.Store.Account(a); err != nil {
		return "", noUser(a, err)
	}
	return a, nil
}

func reportImport(out io.Writer, res mailio.Result, err error) error {
	for _, e := range res.Errors {
		fmt.Fprintf(out, "skipped: %s\n", e)
	}
	if err != nil && res.Imported == 0 && res.Skipped == 0 && res.Present == 0 {
		return err // nothing was read: the error is all there is to say
	}
	fmt.Fprintf(out, "imported %d message(s), skipped %d", res.Imported, res.Skipped)
	if res.Present > 0 {
		fmt.Fprintf(out, ", %d already there (not imported again: their flags are not updated, and what the source deleted since stays here)", res.Present)
	}
	fmt.Fprintln(out)
	return err
}

// importStream appends what the CLI read from an mbox file or a Maildir
// (an import stream: see mailio.Import) to the account.
func importStream(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 1, 1, "PATH --user ADDRESS"); err != nil {
		return err
	}
	a, err := account(env, req)
	if err != nil {
		return err
	}
	if req.Upload == nil {
		return usage("import: nothing to read (the CLI reads the file)")
	}
	p, done := progress(env, "importing")
	res, err := mailio.Import(ctx, env.Store, req.Upload, a, p)
	done()
	if errors.Is(err, store.ErrNoSuchMailbox) && req.Mailbox != "" {
		err = fmt.Errorf("no mailbox %q for %s", req.Mailbox, a)
	}
	return reportImport(out, res, err)
}

// exportMaildir writes the account's Maildir++ tree, as a tar archive
// (see mailio.ArchiveMaildir), to the CLI, which writes the files.
func exportMaildir(ctx context.Context, env *Env, req Request, out io.Writer) error {
	if err := nargs(req, 1, 1, "DIR --user ADDRESS"); err != nil {
		return err
	}
	a, err := account(env, req)
	if err != nil {
		return err
	}
	if req.Download == nil {
		return usage("export: nowhere to write (the CLI writes the files)")
	}
	p, done := progress(env, "exporting")
	res, err := mailio.ArchiveMaildir(ctx, env.Store, req.Download, a, p)
	done()
	if err != nil {
		return err
	}
	// Keywords a folder could not hold are not in the export: the user
	// hears which, and on how many messages, rather than finding out in
	// the new server.
	for _, d := range res.Dropped {
		fmt.Fprintf(out, "warning: %s\n", d)
	}
	fmt.Fprintf(out, "exported %d message(s) to %s\n", res.Exported, req.Args[0])
	return nil
}
