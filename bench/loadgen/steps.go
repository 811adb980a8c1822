package main

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// thunderbirdSync is the command Thunderbird sends for the initial header
// download of a folder.
const thunderbirdSync = "UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS " +
	"(From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups " +
	"In-Reply-To Content-Type Reply-To)])"

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func stepIdleMemory(when string) func(options, *Results) error {
	return func(o options, r *Results) error {
		// Let the servers settle, then take the median of three samples
		// a second apart.
		time.Sleep(3 * time.Second)
		var ms []memory
		for i := 0; i < 3; i++ {
			if i > 0 {
				time.Sleep(time.Second)
			}
			m, err := treeMemory(o.pids)
			if err != nil {
				return err
			}
			ms = append(ms, m)
		}
		sort.Slice(ms, func(i, j int) bool { return ms[i].PssKiB < ms[j].PssKiB })
		m := ms[1]
		key := strings.ReplaceAll(when, " ", "_")
		r.add("idle_pss_"+key, fmt.Sprintf("idle memory, %s (PSS, %d processes)", when, m.Processes), "MiB", float64(m.PssKiB)/1024, false)
		// The split matters for a server that maps its database: mapped
		// file pages are page cache the kernel can drop, not heap.
		r.add("idle_anon_"+key, fmt.Sprintf("  of which anonymous (heap, stacks), %s", when), "MiB", float64(m.AnonKiB)/1024, false)
		r.add("idle_file_"+key, fmt.Sprintf("  of which mapped files, %s", when), "MiB", float64(m.FileKiB)/1024, false)
		return nil
	}
}

// stepAcceptance measures SMTP acceptance for each size and concurrency,
// a new connection per message, and waits after each step until every
// accepted message is in the mailbox.
func stepAcceptance(o options, r *Results) error {
	total := 0
	for _, size := range o.smtpSizes {
		msg := message(1, o.accUser, size)
		for _, conns := range o.smtpConns {
			a := smtpLoad(o.smtp, o.accUser, msg, conns, o.smtpSeconds)
			if a.Accepted == 0 {
				return fmt.Errorf("SMTP %d B x %d: nothing accepted: %v", size, conns, a.FirstErr)
			}
			if a.Failed > 0 {
				fmt.Fprintf(os.Stderr, "  (%d failed: %v)\n", a.Failed, a.FirstErr)
			}
			total += a.Accepted
			t0 := time.Now()
			if err := waitCount(o.imap, o.accUser, o.pass, "INBOX", total, o.drainTimeout); err != nil {
				return err
			}
			drain := time.Since(t0)
			key := fmt.Sprintf("smtp_%d_%d", size, conns)
			label := fmt.Sprintf("SMTP accept %s, %d conn", sizeName(size), conns)
			r.add(key+"_rate", label+": msg/s", "msg/s", a.Rate, true)
			r.add(key+"_p50", label+": p50", "ms", ms(a.P50), false)
			r.add(key+"_p99", label+": p99", "ms", ms(a.P99), false)
			// The rate at which messages reached the mailbox, backlog
			// included: for a server that answers 250 before delivery
			// this is the sustainable rate.
			r.add(key+"_mailbox_rate", label+": into mailbox msg/s", "msg/s",
				float64(a.Accepted)/(o.smtpSeconds+drain).Seconds(), true)
		}
	}
	return nil
}

func sizeName(n int) string {
	if n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// stepVisible measures the time from the start of an SMTP transaction to
// the EXISTS response in an IDLE session of the recipient.
func stepVisible(o options, r *Results) error {
	m, err := dialIMAP(o.imap, o.idleUser, o.pass)
	if err != nil {
		return err
	}
	defer m.c.Close()
	n := 0
	if _, err := m.run("SELECT INBOX", func(line []byte) {
		f := strings.Fields(string(line))
		if len(f) == 3 && f[2] == "EXISTS" {
			fmt.Sscan(f[1], &n)
		}
	}); err != nil {
		return err
	}
	if err := m.idle(); err != nil {
		return err
	}
	var lat []time.Duration
	for i := 0; i < o.visibleTrials; i++ {
		t0 := time.Now()
		if err := sendOne(o.smtp, o.idleUser, message(i, o.idleUser, 2048)); err != nil {
			return err
		}
		n++
		if err := m.waitExists(n, 30*time.Second); err != nil {
			return fmt.Errorf("visible trial %d: %w", i, err)
		}
		lat = append(lat, time.Since(t0))
	}
	p50, _ := percentiles(lat)
	r.add("visible_p50", "send to IDLE EXISTS: p50", "ms", ms(p50), false)
	r.add("visible_max", fmt.Sprintf("send to IDLE EXISTS: max of %d", len(lat)), "ms", ms(lat[len(lat)-1]), false)
	return nil
}

// stepSeed delivers the synchronised mailbox over SMTP.
func stepSeed(o options, r *Results) error {
	rate, err := seed(o.smtp, o.syncUser, o.syncMsgs, 8, 50, o.syncMaxBody)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	t0 := time.Now()
	if err := waitCount(o.imap, o.syncUser, o.pass, "INBOX", o.syncMsgs, o.drainTimeout); err != nil {
		return err
	}
	drain := time.Since(t0)
	r.add("seed_rate", fmt.Sprintf("seed %d msgs (8 conn, 50 msg/conn): accepted", o.syncMsgs), "msg/s", rate, true)
	r.add("seed_mailbox_rate", "seed: into mailbox", "msg/s", float64(o.syncMsgs)/(float64(o.syncMsgs)/rate+drain.Seconds()), true)
	return nil
}

// stepHeaderSync runs Thunderbird's initial header sync, then a flags
// resync, on a fresh connection.
func stepHeaderSync(o options, r *Results) error {
	m, err := dialIMAP(o.imap, o.syncUser, o.pass)
	if err != nil {
		return err
	}
	defer m.logout()
	if _, err := m.run("SELECT INBOX", nil); err != nil {
		return err
	}
	count := 0
	t0 := time.Now()
	lit, err := m.run(thunderbirdSync, func(line []byte) {
		if strings.Contains(string(line), "FETCH") {
			count++
		}
	})
	if err != nil {
		return err
	}
	d := time.Since(t0)
	if count < o.syncMsgs {
		return fmt.Errorf("header sync returned %d FETCH responses, want %d", count, o.syncMsgs)
	}
	r.add("sync_initial", fmt.Sprintf("IMAP initial header sync, %d msgs (%d KB headers)", count, lit/1000), "s", d.Seconds(), false)
	// The resync takes milliseconds: one sample is mostly noise (a
	// collection after the header sync, a scheduling delay), so the
	// median of five is reported, as for SEARCH.
	var ds []time.Duration
	for i := 0; i < 5; i++ {
		t0 = time.Now()
		if _, err := m.run("UID FETCH 1:* (FLAGS)", nil); err != nil {
			return err
		}
		ds = append(ds, time.Since(t0))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	r.add("sync_flags", "IMAP resync UID FETCH 1:* (FLAGS) (median of 5)", "s", ds[2].Seconds(), false)
	return nil
}

// stepSearch runs UID SEARCH SUBJECT five times and reports the median.
func stepSearch(o options, r *Results) error {
	m, err := dialIMAP(o.imap, o.syncUser, o.pass)
	if err != nil {
		return err
	}
	defer m.logout()
	if _, err := m.run("SELECT INBOX", nil); err != nil {
		return err
	}
	var ds []time.Duration
	hits := 0
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		if _, err := m.run("UID SEARCH SUBJECT "+SearchWord, func(line []byte) {
			if f := strings.Fields(string(line)); len(f) >= 2 && f[1] == "SEARCH" {
				hits = len(f) - 2
			}
		}); err != nil {
			return err
		}
		ds = append(ds, time.Since(t0))
	}
	if want := (o.syncMsgs + 99) / 100; hits != want {
		return fmt.Errorf("SEARCH SUBJECT found %d, want %d", hits, want)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	r.add("search_subject", "IMAP UID SEARCH SUBJECT (median of 5)", "s", ds[2].Seconds(), false)
	return nil
}

// stepBodyFetch downloads whole messages.
func stepBodyFetch(o options, r *Results) error {
	m, err := dialIMAP(o.imap, o.syncUser, o.pass)
	if err != nil {
		return err
	}
	defer m.logout()
	if _, err := m.run("SELECT INBOX", nil); err != nil {
		return err
	}
	t0 := time.Now()
	lit, err := m.run(fmt.Sprintf("FETCH 1:%d (BODY.PEEK[])", min(o.bodyFetch, o.syncMsgs)), nil)
	if err != nil {
		return err
	}
	r.add("fetch_body", fmt.Sprintf("IMAP FETCH BODY[] of %d msgs", min(o.bodyFetch, o.syncMsgs)), "MB/s", float64(lit)/1e6/time.Since(t0).Seconds(), true)
	return nil
}

func stepPOP3(o options, r *Results) error {
	p, err := pop3RetrAll(o.pop3, o.syncUser, o.pass)
	if err != nil {
		return fmt.Errorf("pop3: %w", err)
	}
	if p.Messages < o.syncMsgs {
		return fmt.Errorf("pop3 STAT says %d messages, want %d", p.Messages, o.syncMsgs)
	}
	r.add("pop3_login_stat", "POP3 login + STAT", "s", p.LoginStat.Seconds(), false)
	r.add("pop3_retr", fmt.Sprintf("POP3 RETR all %d msgs (%d MB)", p.Messages, p.Bytes/1000000), "MB/s", float64(p.Bytes)/1e6/p.Retr.Seconds(), true)
	return nil
}

// stepAppend APPENDs messages one after another on one connection: first
// each with a synchronizing literal (two round trips: the server's "+"
// comes before the message), then, if the server advertises LITERAL+
// (RFC 7888), with a non-synchronizing one, as Thunderbird sends its
// drafts and sent copies (mail.imap.use_literal_plus, on by default).
func stepAppend(o options, r *Results) error {
	m, err := dialIMAP(o.imap, o.idleUser, o.pass)
	if err != nil {
		return err
	}
	defer m.logout()
	m.run("CREATE Bench", nil) // may exist from an earlier run
	literalPlus := false
	if _, err := m.run("CAPABILITY", func(line []byte) {
		if bytes.HasPrefix(line, []byte("* CAPABILITY ")) {
			for _, c := range strings.Fields(string(line)) {
				literalPlus = literalPlus || strings.EqualFold(c, "LITERAL+")
			}
		}
	}); err != nil {
		return err
	}
	rate, err := m.appends(o, false)
	if err != nil {
		return err
	}
	r.add("append_rate", "IMAP APPEND 4 KiB, one connection", "msg/s", rate, true)
	if !literalPlus {
		return nil
	}
	if rate, err = m.appends(o, true); err != nil {
		return err
	}
	r.add("append_rate_literal_plus", "IMAP APPEND 4 KiB, one connection, LITERAL+", "msg/s", rate, true)
	return nil
}

// appends APPENDs o.appends messages to Bench, one after another, and
// returns their rate; nonSync sends each literal with its command.
func (m *imapConn) appends(o options, nonSync bool) (float64, error) {
	t0 := time.Now()
	for i := 0; i < o.appends; i++ {
		msg := message(i, o.idleUser, 4096)
		m.tag++
		tag := fmt.Sprintf("t%d", m.tag)
		if nonSync {
			fmt.Fprintf(m.c, "%s APPEND Bench (\\Seen) {%d+}\r\n%s\r\n", tag, len(msg), msg)
		} else {
			fmt.Fprintf(m.c, "%s APPEND Bench (\\Seen) {%d}\r\n", tag, len(msg))
			line, err := m.readLine(nil)
			if err != nil {
				return 0, err
			}
			if !strings.HasPrefix(string(line), "+") {
				return 0, fmt.Errorf("APPEND: %s", line)
			}
			m.c.Write(append(msg, '\r', '\n'))
		}
		if _, err := m.wait(tag, nil); err != nil {
			return 0, err
		}
	}
	return float64(o.appends) / time.Since(t0).Seconds(), nil
}

// stepIdleConnections reports the memory an idle IMAP connection (logged
// in, INBOX selected, in IDLE) costs the server. It opens idleConns such
// connections, measures, opens as many again and measures again: the
// difference divided by idleConns is the cost of one.
//
// Logins run one at a time, and the step runs on the fresh server before
// any load: a Go server's resident memory then holds at most one
// argon2id buffer of garbage (19 MiB, the same in both states) and no
// freed heap from earlier load that the runtime would be returning to the
// system while we measure. Each state is the median of three samples.
func stepIdleConnections(o options, r *Results) error {
	first, err := openIdle(o, o.idleConns)
	defer closeIdle(first)
	if err != nil {
		return err
	}
	before, err := settledMemory(o.pids)
	if err != nil {
		return err
	}
	second, err := openIdle(o, o.idleConns)
	defer closeIdle(second)
	if err != nil {
		return err
	}
	after, err := settledMemory(o.pids)
	if err != nil {
		return err
	}
	per := float64(after-before) / float64(o.idleConns)
	r.add("idle_conn_pss", fmt.Sprintf("memory per idle IDLE connection (PSS, %d->%d conns)", o.idleConns, 2*o.idleConns), "KiB", per, false)
	return nil
}

// settledMemory waits 3 s, then returns the median PSS (KiB) of three
// samples a second apart.
func settledMemory(pids []int) (int64, error) {
	time.Sleep(3 * time.Second)
	var v []int64
	for i := 0; i < 3; i++ {
		if i > 0 {
			time.Sleep(time.Second)
		}
		m, err := treeMemory(pids)
		if err != nil {
			return 0, err
		}
		v = append(v, m.PssKiB)
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	return v[1], nil
}

// openIdle opens n connections that log in, select INBOX and IDLE, one
// at a time.
func openIdle(o options, n int) ([]*imapConn, error) {
	conns := make([]*imapConn, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 1)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			m, err := dialIMAP(o.imap, o.idleUser, o.pass)
			if err == nil {
				if _, err = m.run("SELECT INBOX", nil); err == nil {
					err = m.idle()
				}
				conns[i] = m
			}
			if err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return conns, fmt.Errorf("idle connections: %w", err)
	}
	return conns, nil
}

func closeIdle(conns []*imapConn) {
	for _, m := range conns {
		if m != nil {
			m.c.Close()
		}
	}
}
