package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// options of one run; the sizes come from BENCH_* environment variables.
type options struct {
	name              string
	smtp, imap, pop3  string
	pids              []int
	pass              string
	out               string
	smtpSeconds       time.Duration // per acceptance step
	smtpConns         []int
	smtpSizes         []int
	syncMsgs          int
	syncMaxBody       int
	visibleTrials     int
	idleConns         int
	appends           int
	bodyFetch         int
	drainTimeout      time.Duration
	syncUser, accUser string // the 10,000-message mailbox; the acceptance sink
	idleUser          string // visibility, APPEND and idle connections
}

// The accounts both servers are set up with (password from -pass).
const (
	SyncUser = "alice@example.test"
	AccUser  = "bob@example.test"
	IdleUser = "carol@example.test"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envInts(name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func parseOptions(args []string) (options, error) {
	o := options{
		smtpSeconds:   time.Duration(envInt("BENCH_SMTP_SECONDS", 5)) * time.Second,
		smtpConns:     envInts("BENCH_SMTP_CONNS", []int{1, 8, 32}),
		smtpSizes:     envInts("BENCH_SMTP_SIZES", []int{1024, 100 * 1024}),
		syncMsgs:      envInt("BENCH_SYNC_MSGS", 10000),
		syncMaxBody:   envInt("BENCH_SYNC_MAX_BODY", 30000),
		visibleTrials: envInt("BENCH_VISIBLE_TRIALS", 20),
		idleConns:     envInt("BENCH_IDLE_CONNS", 1000),
		appends:       envInt("BENCH_APPENDS", 1000),
		bodyFetch:     envInt("BENCH_BODY_FETCH", 1000),
		drainTimeout:  time.Duration(envInt("BENCH_DRAIN_SECONDS", 600)) * time.Second,
		syncUser:      SyncUser, accUser: AccUser, idleUser: IdleUser,
	}
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	fs.StringVar(&o.name, "name", "server", "name of the server in the table")
	fs.StringVar(&o.smtp, "smtp", "", "SMTP address (port 25 stand-in)")
	fs.StringVar(&o.imap, "imap", "", "IMAP address")
	fs.StringVar(&o.pop3, "pop3", "", "POP3 address")
	fs.StringVar(&o.pass, "pass", "bench", "password of every account")
	fs.StringVar(&o.out, "out", "", "write the figures as JSON to this file")
	pids := fs.String("pid", "", "comma-separated PIDs of the server's root processes")
	fs.Parse(args)
	for _, f := range strings.Split(*pids, ",") {
		if f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil {
			return o, fmt.Errorf("-pid: %w", err)
		}
		o.pids = append(o.pids, p)
	}
	if o.smtp == "" || o.imap == "" || o.pop3 == "" || len(o.pids) == 0 {
		return o, fmt.Errorf("run needs -smtp, -imap, -pop3 and -pid")
	}
	return o, nil
}

func runCmd(args []string) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	raiseFileLimit()
	r := &Results{Name: o.name}
	fmt.Fprintf(os.Stderr, "loadgen: %s\n", o.name)
	steps := []struct {
		name string
		run  func(options, *Results) error
	}{
		{"memory", stepIdleMemory("fresh")}, {"idle", stepIdleConnections}, {"smtp", stepAcceptance},
		{"visible", stepVisible}, {"seed", stepSeed}, {"sync", stepHeaderSync}, {"search", stepSearch},
		{"fetch", stepBodyFetch}, {"pop3", stepPOP3}, {"append", stepAppend}, {"memory", stepIdleMemory("after load")},
	}
	only := map[string]bool{}
	for _, n := range strings.Split(os.Getenv("BENCH_STEPS"), ",") {
		if n = strings.TrimSpace(n); n != "" {
			only[n] = true
		}
	}
	for _, step := range steps {
		if len(only) > 0 && !only[step.name] {
			continue
		}
		if err := step.run(o, r); err != nil {
			r.write(o.out)
			return err
		}
	}
	if o.out != "" {
		return r.write(o.out)
	}
	return nil
}
