package imap

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	imapv2 "github.com/emersion/go-imap/v2"

	"github.com/posthorn/posthorn/store"
)

// hub routes store events to the tracker of each selected mailbox. It holds
// one store subscription for the whole server; a tracker exists while at
// least one session has its mailbox selected.
type hub struct {
	store  store.Store
	logger *slog.Logger

	mu     sync.Mutex
	boxes  map[boxKey]*tracker
	logins map[string]map[*session]struct{} // logged-in sessions by account
	// recent keeps, for a mailbox no session has open, where its
	// \Recent messages begin (see tracker.recentFrom): from when its
	// last tracker went, or from the first mail that came while none
	// was open. In memory only: after a restart, mail that came before
	// the first IMAP login is not \Recent.
	recent  map[boxKey]recentMark
	stop    chan struct{}
	done    chan struct{}
	started bool
	closed  bool
	// seen is the store.Event Seq up to which every event has been
	// dispatched (see settle).
	seen atomic.Uint64
}

// settleWait bounds how long a command waits for the hub to catch up.
const settleWait = 50 * time.Millisecond

// settle waits until the hub has dispatched every event published before
// the call, at most settleWait. The store publishes a change's events
// before the write returns, so after settle a change that another
// protocol has acknowledged (a POP3 QUIT, an SMTP 250) is in the trackers
// and shows in the updates of the command that follows. When the hub is
// caught up, as it nearly always is, this is one atomic load.
func (h *hub) settle() {
	target := h.store.EventSeq()
	if h.seen.Load() >= target {
		return
	}
	h.mu.Lock()
	running := h.started && !h.closed
	h.mu.Unlock()
	if !running {
		return // no subscription yet: nothing is selected anyway
	}
	deadline := time.Now().Add(settleWait)
	for h.seen.Load() < target && time.Now().Before(deadline) {
		time.Sleep(50 * time.Microsecond)
	}
}

type boxKey struct{ account, mailbox string }

// recentMark is where the \Recent messages of a mailbox begin, for the
// UIDVALIDITY it was taken under.
type recentMark struct{ uidValidity, from uint32 }

func newHub(st store.Store, logger *slog.Logger) *hub {
	return &hub{store: st, logger: logger, boxes: map[boxKey]*tracker{}, logins: map[string]map[*session]struct{}{},
		recent: map[boxKey]recentMark{},
		stop:   make(chan struct{}), done: make(chan struct{})}
}

// start subscribes lazily, at the first login: the store may not accept
// subscriptions before the server runs.
func (h *hub) startLocked() {
	if h.started || h.closed {
		return
	}
	h.started = true
	ch, cancel := h.store.Subscribe("")
	// Events before the subscription never come; trackers opened from now
	// on load the store's state, which includes them.
	h.seen.Store(h.store.EventSeq())
	go h.run(ch, cancel)
	go h.keepalives()
}

// keepalives sends "* OK Still here" to the sessions in IDLE every
// idleKeepalive, until the hub closes; apart from the event dispatch, so
// that a slow client never delays a notification.
func (h *hub) keepalives() {
	tick := time.NewTicker(idleKeepalive)
	defer tick.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-tick.C:
		}
		// A few at a time: a client that reads nothing holds its write
		// for untaggedWriteTimeout, and must not hold up the others.
		all := h.sessions()
		work := make(chan *session)
		var wg sync.WaitGroup
		for range min(keepaliveWorkers, len(all)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ss := range work {
					ss.keepalive()
				}
			}()
		}
		for _, ss := range all {
			work <- ss
		}
		close(work)
		wg.Wait()
	}
}

// keepaliveWorkers is how many IDLE keepalives are written at once.
const keepaliveWorkers = 16

// sessions lists the logged-in sessions.
func (h *hub) sessions() []*session {
	h.mu.Lock()
	defer h.mu.Unlock()
	var all []*session
	for _, m := range h.logins {
		for ss := range m {
			all = append(all, ss)
		}
	}
	return all
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	close(h.stop)
	if !h.started {
		close(h.done)
	}
}

func (h *hub) run(ch <-chan store.Event, cancel func()) {
	defer close(h.done)
	defer func() {
		if v := recover(); v != nil {
			h.logger.Error("imap: panic in event dispatch", "panic", v)
		}
	}()
	for {
		select {
		case <-h.stop:
			cancel()
			return
		case ev, ok := <-ch:
			if !ok {
				// Overflow: the store dropped us. Resubscribe, then
				// reload every tracker so nothing is missed.
				cancel()
				select { // a closed store would otherwise spin here
				case <-h.stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				ch, cancel = h.store.Subscribe("")
				// Every event up to here is in what resyncAll reads.
				seq := h.store.EventSeq()
				h.resyncAll()
				h.kickDeleted()
				h.seen.Store(seq)
				continue
			}
			h.dispatch(ev)
			if ev.Seq > h.seen.Load() {
				h.seen.Store(ev.Seq)
			}
		}
	}
}

func (h *hub) lookup(account, mailbox string) *tracker {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.boxes[boxKey{account, mailbox}]
}

func (h *hub) dispatch(ev store.Event) {
	switch ev.Kind {
	case store.EventAccountDelete:
		h.forgetRecent(ev.Account, "")
		h.kick(ev.Account, "Account deleted")
		return
	case store.EventAccountDisable:
		h.kick(ev.Account, "Account disabled")
		return
	case store.EventMailboxRename:
		h.forgetRecent(ev.Account, ev.Mailbox)
		h.rename(ev.Account, ev.Mailbox, ev.NewName)
		return
	case store.EventMailboxDelete:
		h.forgetRecent(ev.Account, ev.Mailbox)
		if t := h.lookup(ev.Account, ev.Mailbox); t != nil {
			h.deleted(t)
		}
		return
	}
	t := h.lookup(ev.Account, ev.Mailbox)
	if t == nil {
		if ev.Kind == store.EventAppend && len(ev.UIDs) > 0 {
			h.markRecent(boxKey{ev.Account, ev.Mailbox}, ev.UIDs[0])
		}
		return
	}
	switch ev.Kind {
	case store.EventAppend:
		t.applyAppend(ev.Messages)
	case store.EventFlags:
		t.applyFlags(ev.Messages, nil)
	case store.EventExpunge:
		t.applyExpunge(ev.UIDs)
	}
}

// rename moves trackers of a renamed mailbox and its children. Renaming
// INBOX leaves an empty INBOX behind (RFC 9051 section 6.3.6): sessions
// that have INBOX selected keep it and see its messages expunged.
func (h *hub) rename(account, oldName, newName string) {
	if oldName == "INBOX" {
		if t := h.lookup(account, "INBOX"); t != nil {
			t.resync()
		}
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, t := range h.boxes {
		if k.account != account {
			continue
		}
		if k.mailbox == oldName || len(k.mailbox) > len(oldName) && k.mailbox[:len(oldName)] == oldName && k.mailbox[len(oldName)] == Delim {
			delete(h.boxes, k)
			nk := boxKey{account, newName + k.mailbox[len(oldName):]}
			t.mu.Lock()
			t.key = nk
			t.mu.Unlock()
			h.boxes[nk] = t
		}
	}
}

// byeMailboxDeleted is the BYE of a session whose selected mailbox was
// deleted by another session (Dovecot's words).
const byeMailboxDeleted = "Selected mailbox was deleted, have to disconnect"

// deleted handles the deletion of t's mailbox, as Dovecot does: the
// sessions that have it selected are ended with BYE, but for the one
// that deleted it (view.deleting), which sees its messages expunged and
// stays selected on an empty mailbox (imapserver keeps it in the selected
// state: it cannot be unselected from here). The tracker leaves the hub,
// so that a mailbox created again under the name gets a tracker of its
// own and none of its events reach the old one. Idempotent: the deleting
// session calls it too, without waiting for the store's event.
func (h *hub) deleted(t *tracker) {
	h.mu.Lock()
	t.mu.Lock()
	k := t.key
	t.mu.Unlock()
	if h.boxes[k] == t {
		delete(h.boxes, k)
	}
	h.mu.Unlock()
	owners := t.markDeleted()
	if len(owners) == 0 {
		return
	}
	if _, err := h.store.Account(k.account); errors.Is(err, store.ErrNoSuchAccount) {
		return // the whole account is gone: kick ends its sessions
	}
	for _, ss := range owners {
		go ss.bye(byeMailboxDeleted)
	}
}

// markDeleted marks the mailbox deleted and expunges its messages, and
// returns the sessions to end: those that have it selected, but for the
// one deleting it, each once.
func (t *tracker) markDeleted() []*session {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gone = true
	if len(t.msgs) > 0 {
		uids := make([]uint32, len(t.msgs))
		for i := range t.msgs {
			uids[i] = t.msgs[i].UID
		}
		t.expungeLocked(uids)
	}
	var out []*session
	for v := range t.views {
		if v.owner != nil && !v.deleting && !v.ended {
			v.ended = true
			out = append(out, v.owner)
		}
	}
	return out
}

// login registers a logged-in session, so that it ends when its account
// is deleted; it starts the subscription if need be.
func (h *hub) login(ss *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.startLocked()
	m := h.logins[ss.account]
	if m == nil {
		m = map[*session]struct{}{}
		h.logins[ss.account] = m
	}
	m[ss] = struct{}{}
}

// logout unregisters a session (at its end).
func (h *hub) logout(ss *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m := h.logins[ss.account]; m != nil {
		delete(m, ss)
		if len(m) == 0 {
			delete(h.logins, ss.account)
		}
	}
}

// kick ends the sessions of a deleted or disabled account with BYE (why),
// as Dovecot's kick does: every command of theirs would fail, or they
// would go on reading mail that is no longer theirs to read. Each BYE is written on a
// goroutine of its own: a session may be blocked writing to a slow
// client, and the hub must go on dispatching.
func (h *hub) kick(account, why string) {
	h.mu.Lock()
	m := h.logins[account]
	delete(h.logins, account)
	h.mu.Unlock()
	for ss := range m {
		go ss.bye(why)
	}
}

// byeAll ends every logged-in session with BYE (text), each on a
// goroutine of its own as in kick, and waits for them until ctx is done.
// A session writing a response (a long FETCH) gets its BYE once that
// response is out, between two responses, not cut inside a literal.
func (h *hub) byeAll(ctx context.Context, text string) {
	all := h.sessions()
	var wg sync.WaitGroup
	for _, ss := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ss.bye(text)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// kickDeleted kicks the sessions of accounts deleted or disabled while
// events were lost (a subscription overflow).
func (h *hub) kickDeleted() {
	h.mu.Lock()
	accounts := make([]string, 0, len(h.logins))
	for a := range h.logins {
		accounts = append(accounts, a)
	}
	h.mu.Unlock()
	for _, a := range accounts {
		switch acct, err := h.store.Account(a); {
		case errors.Is(err, store.ErrNoSuchAccount):
			h.kick(a, "Account deleted")
		case err == nil && acct.Disabled:
			h.kick(a, "Account disabled")
		}
	}
}

// resyncAll reloads every tracker after lost events; a mailbox that was
// deleted meanwhile (gone, or created again: another UIDVALIDITY) is
// handled as its delete event would have been.
func (h *hub) resyncAll() {
	h.mu.Lock()
	all := make([]*tracker, 0, len(h.boxes))
	for _, t := range h.boxes {
		all = append(all, t)
	}
	h.mu.Unlock()
	for _, t := range all {
		t.mu.RLock()
		k, uidValidity := t.key, t.uidValidity
		t.mu.RUnlock()
		mb, err := h.store.Mailbox(k.account, k.mailbox)
		switch {
		case errors.Is(err, store.ErrNoSuchAccount):
			continue // kickDeleted ends its sessions
		case errors.Is(err, store.ErrNoSuchMailbox), err == nil && mb.UIDValidity != uidValidity:
			h.deleted(t)
			continue
		}
		t.resync()
	}
}

// open returns the tracker of a mailbox with a new view for ss registered
// on it, loading the mailbox on first use. The view is registered before
// the snapshot is read, so no change can fall between the two.
func (h *hub) open(ss *session, mailbox string) (*view, error) {
	h.mu.Lock()
	h.startLocked()
	k := boxKey{ss.account, mailbox}
	t := h.boxes[k]
	if t != nil && t.isGone() {
		// Deleted (and maybe created again): sessions still on the old
		// one keep it; new ones get a fresh tracker.
		delete(h.boxes, k)
		t = nil
	}
	if t == nil {
		t = &tracker{hub: h, key: k, views: map[*view]struct{}{}, recentMark: h.recent[k]}
		t.mu.Lock() // held until loaded: events for it wait
		h.boxes[k] = t
		t.refs++
		h.mu.Unlock()
		err := t.load()
		t.mu.Unlock()
		if err != nil {
			h.release(t)
			return nil, err
		}
	} else {
		t.refs++
		h.mu.Unlock()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.loadErr != nil {
		h.release(t)
		return nil, t.loadErr
	}
	v := &view{t: t, owner: ss, maxUID: t.lastUID(), flagsGen: t.flagsGen}
	t.views[v] = struct{}{}
	return v, nil
}

// release drops a reference; the last one removes the tracker.
func (h *hub) release(t *tracker) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t.refs--
	if t.refs == 0 {
		t.mu.Lock()
		k, mark, gone := t.key, recentMark{t.uidValidity, t.recentFrom}, t.gone || t.loadErr != nil
		t.mu.Unlock()
		if h.boxes[k] == t {
			delete(h.boxes, k)
			if !gone {
				h.recent[k] = mark
			}
		}
	}
}

// forgetRecent drops the \Recent mark of a mailbox deleted or renamed
// away (mailbox "": of every mailbox of a deleted account): a mailbox made
// under the name later is another, whose mail the old mark would keep
// from being \Recent.
func (h *hub) forgetRecent(account, mailbox string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if mailbox != "" {
		delete(h.recent, boxKey{account, mailbox})
		return
	}
	for k := range h.recent {
		if k.account == account {
			delete(h.recent, k)
		}
	}
}

// markRecent notes that mail from uid on came to a mailbox no session has
// open: the first to select it will have it \Recent. A mark already
// there is earlier, and stays.
func (h *hub) markRecent(k boxKey, uid uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.recent[k]; !ok && h.boxes[k] == nil {
		h.recent[k] = recentMark{from: uid} // UIDVALIDITY unknown: taken as the mailbox's
	}
}

// recentCount is the number of messages of a mailbox not yet \Recent in
// any session (STATUS RECENT): those from its mark on, if it has one.
func (h *hub) recentCount(account, mailbox string, uidValidity, uidNext uint32, msgs func() ([]store.Message, error)) (uint32, error) {
	k := boxKey{account, mailbox}
	h.mu.Lock()
	mark, ok := h.recent[k]
	if t := h.boxes[k]; t != nil {
		t.mu.RLock()
		mark, ok = recentMark{t.uidValidity, t.recentFrom}, t.loadErr == nil && !t.gone
		t.mu.RUnlock()
	}
	h.mu.Unlock()
	if !ok || mark.uidValidity != uidValidity && mark.uidValidity != 0 || mark.from == 0 || mark.from >= uidNext {
		return 0, nil
	}
	all, err := msgs()
	if err != nil {
		return 0, err
	}
	var n uint32
	for _, m := range all {
		if m.UID >= mark.from {
			n++
		}
	}
	return n, nil
}

// tracker is the shared state of one selected mailbox: its message index
// in UID order, as of the store events and session changes applied so
// far. Every apply is idempotent, so a session may apply its own change
// before the store's event for it arrives.
type tracker struct {
	hub  *hub
	refs int // guarded by hub.mu

	mu          sync.RWMutex
	key         boxKey
	loadErr     error
	uidValidity uint32
	msgs        []store.Message // sorted by UID
	nextUID     uint32          // every UID below was applied (or expunged)
	// recentFrom: the messages from this UID on are \Recent (RFC 3501
	// section 2.3.2) to no session yet. SELECT takes them for its
	// session, and so does the first read-write session told of new
	// mail (claimRecent). recentMark is the hub's mark at creation,
	// which load takes if its UIDVALIDITY is the mailbox's.
	recentFrom uint32
	recentMark recentMark
	gone       bool // the mailbox was deleted
	views      map[*view]struct{}
	appended   chan struct{} // closed and replaced at every append

	// keywords are those in the FLAGS response: defaultKeywords and
	// every keyword seen in the mailbox since it was loaded. flagsGen
	// counts their additions; a view that has seen fewer is sent FLAGS
	// (RFC 9051 section 7.3.5). Under mu.
	keywords map[string]struct{}
	flagsGen uint64

	// envs caches decoded ENVELOPEs by blob id for SEARCH (blobs never
	// change); it lives as long as the mailbox is selected somewhere.
	envMu sync.Mutex
	envs  map[uint64]*imapv2.Envelope
}

// maxCachedEnvelopes bounds the SEARCH envelope cache of one mailbox.
const maxCachedEnvelopes = 200000

func (t *tracker) cachedEnvelope(id uint64) *imapv2.Envelope {
	t.envMu.Lock()
	defer t.envMu.Unlock()
	return t.envs[id]
}

func (t *tracker) cacheEnvelope(id uint64, env *imapv2.Envelope) {
	if env == nil {
		return
	}
	t.envMu.Lock()
	defer t.envMu.Unlock()
	if t.envs == nil {
		t.envs = map[uint64]*imapv2.Envelope{}
	}
	if len(t.envs) < maxCachedEnvelopes {
		t.envs[id] = env
	}
}

// waitAppended waits until uid has been applied, or for at most d.
func (t *tracker) waitAppended(uid uint32, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		t.mu.Lock()
		if t.nextUID > uid {
			t.mu.Unlock()
			return
		}
		if t.appended == nil {
			t.appended = make(chan struct{})
		}
		ch := t.appended
		t.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			return
		}
	}
}

// load reads the mailbox; t.mu is held.
func (t *tracker) load() error {
	mb, err := t.hub.store.Mailbox(t.key.account, t.key.mailbox)
	if err != nil {
		t.loadErr = err
		return err
	}
	msgs, err := t.hub.store.Messages(t.key.account, t.key.mailbox)
	if err != nil {
		t.loadErr = err
		return err
	}
	t.uidValidity = mb.UIDValidity
	t.msgs = msgs
	t.keywords = make(map[string]struct{}, len(defaultKeywords))
	for _, k := range defaultKeywords {
		t.keywords[k] = struct{}{}
	}
	for i := range msgs {
		t.noteKeywords(msgs[i].Flags)
	}
	t.flagsGen = 0
	t.nextUID = mb.UIDNext
	if n := len(msgs); n > 0 && msgs[n-1].UID >= t.nextUID {
		t.nextUID = msgs[n-1].UID + 1
	}
	t.recentFrom = t.nextUID
	if m := t.recentMark; (m.uidValidity == t.uidValidity || m.uidValidity == 0) && m.from > 0 && m.from < t.recentFrom {
		t.recentFrom = m.from
	}
	return nil
}

// claimRecent makes the messages not yet \Recent anywhere \Recent in v
// (SELECT; EXAMINE shows them without taking them, RFC 3501 section
// 6.3.2); t.mu is held. New mail is taken by the first read-write session
// told of it (view.collect), as in Dovecot: one that leaves before it is
// told leaves it \Recent for the next.
func (t *tracker) claimRecent(v *view) {
	i, _ := slices.BinarySearchFunc(t.msgs, t.recentFrom, func(m store.Message, uid uint32) int { return cmp.Compare(m.UID, uid) })
	for _, m := range t.msgs[i:] {
		v.addRecent(m.UID)
	}
	if !v.readOnly {
		t.recentFrom = t.nextUID
	}
}

// noteKeywords adds the keywords of flags not listed yet; t.mu is held.
func (t *tracker) noteKeywords(flags []string) {
	for _, f := range flags {
		if len(f) == 0 || f[0] == '\\' {
			continue
		}
		if _, ok := t.keywords[f]; !ok {
			t.keywords[f] = struct{}{}
			t.flagsGen++
		}
	}
}

// flagList is the FLAGS response: the system flags and t.keywords, sorted;
// t.mu is held.
func (t *tracker) flagList() []imapv2.Flag {
	out := slices.Clone(systemFlags)
	keys := make([]string, 0, len(t.keywords))
	for k := range t.keywords {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, imapv2.Flag(k))
	}
	return out
}

func (t *tracker) isGone() bool {
	t.mu.RLock() // lock order: hub.mu, then tracker.mu
	defer t.mu.RUnlock()
	return t.gone
}

func (t *tracker) lastUID() uint32 {
	if len(t.msgs) == 0 {
		return 0
	}
	return t.msgs[len(t.msgs)-1].UID
}

// rank is the number of messages with a UID <= uid.
func (t *tracker) rank(uid uint32) int {
	return sort.Search(len(t.msgs), func(i int) bool { return t.msgs[i].UID > uid })
}

// index returns the position of uid in msgs, or -1.
func (t *tracker) index(uid uint32) int {
	i := sort.Search(len(t.msgs), func(i int) bool { return t.msgs[i].UID >= uid })
	if i < len(t.msgs) && t.msgs[i].UID == uid {
		return i
	}
	return -1
}

// applyAppend adds new messages. UIDs below nextUID are known already. A
// UID above nextUID means an earlier append was not seen yet (events out
// of order, or a session's own append applied first): the tracker then
// reloads from the store, which has every committed message in order.
func (t *tracker) applyAppend(msgs []store.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	added := false
	for _, m := range msgs {
		switch {
		case m.UID < t.nextUID:
			continue
		case m.UID > t.nextUID:
			t.resyncLocked()
			return
		}
		t.msgs = append(t.msgs, m)
		t.nextUID = m.UID + 1
		t.noteKeywords(m.Flags)
		added = true
	}
	if added {
		t.notifyAll()
	}
	t.wakeAppendWaiters()
}

// applyFlags records changed flags. source, if not nil, is the view that
// made the change and reports it itself.
func (t *tracker) applyFlags(msgs []store.Message, source *view) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range msgs {
		i := t.index(m.UID)
		if i < 0 {
			continue
		}
		cur := &t.msgs[i]
		if m.ModSeq != 0 && m.ModSeq <= cur.ModSeq {
			continue
		}
		same := slices.Equal(cur.Flags, m.Flags)
		cur.Flags, cur.ModSeq = m.Flags, m.ModSeq
		if same {
			continue
		}
		t.noteKeywords(m.Flags)
		for v := range t.views {
			if v != source && m.UID <= v.maxUID {
				if _, own := v.storing[m.UID]; !own {
					v.markFlags(m.UID)
				}
			}
		}
	}
	t.notifyAll()
}

// beginStore marks UIDs whose flags the view is changing: events for them
// are not echoed to it until endStore, which reports only what differs
// from the view's own result (another session's later change).
func (v *view) beginStore(uids []uint32) {
	v.t.mu.Lock()
	defer v.t.mu.Unlock()
	v.storing = make(map[uint32]struct{}, len(uids))
	for _, u := range uids {
		v.storing[u] = struct{}{}
	}
}

func (v *view) endStore(result []store.Message) {
	v.t.applyFlags(result, v)
	t := v.t
	t.mu.Lock()
	defer t.mu.Unlock()
	byUID := make(map[uint32][]string, len(result))
	for _, m := range result {
		byUID[m.UID] = m.Flags
	}
	for uid := range v.storing {
		i := t.index(uid)
		if i < 0 || uid > v.maxUID {
			continue
		}
		if f, ok := byUID[uid]; !ok || !slices.Equal(f, t.msgs[i].Flags) {
			v.markFlags(uid)
		}
	}
	v.storing = nil
}

// applyExpunge removes messages; views that knew them get them as ghosts
// until they may be told (RFC 9051 section 7.5.1).
func (t *tracker) applyExpunge(uids []uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expungeLocked(uids)
}

func (t *tracker) expungeLocked(uids []uint32) {
	gone := map[uint32]struct{}{}
	for _, uid := range uids {
		if t.index(uid) >= 0 {
			gone[uid] = struct{}{}
		}
	}
	if len(gone) == 0 {
		return
	}
	kept := t.msgs[:0]
	for _, m := range t.msgs {
		if _, ok := gone[m.UID]; !ok {
			kept = append(kept, m)
		}
	}
	clear(t.msgs[len(kept):])
	t.msgs = kept
	for v := range t.views {
		for uid := range gone {
			if uid <= v.maxUID {
				v.addGhost(uid)
			}
			delete(v.recent, uid)
		}
	}
	t.notifyAll()
}

func (t *tracker) resync() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.resyncLocked()
}

// resyncLocked reloads the index from the store and applies the
// difference: messages gone are expunged, flags that differ are reported,
// messages at or above nextUID are appended.
func (t *tracker) resyncLocked() {
	msgs, err := t.hub.store.Messages(t.key.account, t.key.mailbox)
	if err != nil {
		t.hub.logger.Warn("imap: mailbox resync failed", "account", t.key.account, "mailbox", t.key.mailbox, "err", err)
		return
	}
	now := make(map[uint32]int, len(msgs))
	for i, m := range msgs {
		now[m.UID] = i
	}
	var gone []uint32
	for _, m := range t.msgs {
		if _, ok := now[m.UID]; !ok {
			gone = append(gone, m.UID)
		}
	}
	t.expungeLocked(gone)
	var changed []store.Message
	for _, m := range t.msgs {
		if n := msgs[now[m.UID]]; !slices.Equal(n.Flags, m.Flags) {
			changed = append(changed, n)
		}
	}
	for _, n := range changed {
		i := t.index(n.UID)
		t.msgs[i].Flags, t.msgs[i].ModSeq = n.Flags, n.ModSeq
		t.noteKeywords(n.Flags)
		for v := range t.views {
			if n.UID <= v.maxUID {
				v.markFlags(n.UID)
			}
		}
	}
	for _, m := range msgs {
		if m.UID >= t.nextUID {
			t.msgs = append(t.msgs, m)
			t.nextUID = m.UID + 1
			t.noteKeywords(m.Flags)
		}
	}
	t.notifyAll()
	t.wakeAppendWaiters()
}

func (t *tracker) wakeAppendWaiters() {
	if t.appended != nil {
		close(t.appended)
		t.appended = nil
	}
}

func (t *tracker) notifyAll() {
	for v := range t.views {
		if v.notify != nil && v.pendingLocked() {
			select {
			case v.notify <- struct{}{}:
			default:
			}
		}
	}
}

// view is one session's view of a selected mailbox: the tracker's messages
// with UID <= maxUID, plus ghosts (expunged, not yet reported). All fields
// are guarded by t.mu.
type view struct {
	t        *tracker
	owner    *session // the session that has the mailbox selected
	readOnly bool
	deleting bool                // owner is deleting the mailbox: not ended for it
	ended    bool                // owner is being ended (the mailbox was deleted)
	maxUID   uint32              // highest UID reported with EXISTS
	ghosts   []uint32            // sorted
	flags    map[uint32]struct{} // UIDs with unreported flag changes
	storing  map[uint32]struct{} // UIDs this view is changing (beginStore)
	notify   chan struct{}       // set while IDLE
	flagsGen uint64              // the tracker's flagsGen when FLAGS was last sent
	// recent are the UIDs \Recent in this session (IMAP4rev1), and
	// recentSent their number as last reported (SELECT, RECENT).
	recent     map[uint32]struct{}
	recentSent int
}

func (v *view) addRecent(uid uint32) {
	if v.recent == nil {
		v.recent = map[uint32]struct{}{}
	}
	v.recent[uid] = struct{}{}
}

// isRecent: uid is \Recent in v; t.mu is held.
func (v *view) isRecent(uid uint32) bool {
	_, ok := v.recent[uid]
	return ok
}

func (v *view) close() {
	v.t.mu.Lock()
	delete(v.t.views, v)
	v.t.mu.Unlock()
	v.t.hub.release(v.t)
}

func (v *view) setDeleting(on bool) {
	v.t.mu.Lock()
	v.deleting = on
	v.t.mu.Unlock()
}

func (v *view) markFlags(uid uint32) {
	if v.flags == nil {
		v.flags = map[uint32]struct{}{}
	}
	v.flags[uid] = struct{}{}
}

func (v *view) addGhost(uid uint32) {
	i, found := slices.BinarySearch(v.ghosts, uid)
	if !found {
		v.ghosts = slices.Insert(v.ghosts, i, uid)
	}
	delete(v.flags, uid)
}

func (v *view) pendingLocked() bool {
	return len(v.ghosts) > 0 || len(v.flags) > 0 || v.t.lastUID() > v.maxUID || v.flagsGen != v.t.flagsGen
}

// count is the number of messages the client knows of.
func (v *view) count() uint32 {
	return uint32(v.t.rank(v.maxUID) + len(v.ghosts))
}

// seqOf returns the client's sequence number of uid, or 0.
func (v *view) seqOf(uid uint32) uint32 {
	if uid == 0 || uid > v.maxUID {
		return 0
	}
	g, isGhost := slices.BinarySearch(v.ghosts, uid)
	if !isGhost && v.t.index(uid) < 0 {
		return 0
	}
	return uint32(v.t.rank(uid) + g + boolInt(isGhost))
}

// entry is one message of a client view: m is nil for a ghost. recent:
// it is \Recent in the view.
type entry struct {
	seq    uint32
	uid    uint32
	m      *store.Message
	recent bool
}

// walk calls fn for the client view's messages in sequence order from
// sequence number from on, until fn returns false.
func (v *view) walk(from uint32, fn func(e entry) bool) {
	limit := v.t.rank(v.maxUID)
	i, g := 0, 0
	if len(v.ghosts) == 0 && from > 0 {
		i = int(from) - 1
	}
	seq := uint32(i + 1)
	for i < limit || g < len(v.ghosts) {
		var e entry
		if g < len(v.ghosts) && (i >= limit || v.ghosts[g] < v.t.msgs[i].UID) {
			e = entry{seq: seq, uid: v.ghosts[g]}
			g++
		} else {
			e = entry{seq: seq, uid: v.t.msgs[i].UID, m: &v.t.msgs[i], recent: v.isRecent(v.t.msgs[i].UID)}
			i++
		}
		if seq >= from && !fn(e) {
			return
		}
		seq++
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
