package store

import (
	"strings"
	"sync"
	"sync/atomic"
)

// subscriberBuffer is the channel capacity of a subscriber. A subscriber
// whose buffer is full when an event is published has its channel closed
// (instead of blocking writers) and must resubscribe and resynchronize,
// as an IMAP session does after losing track of its mailbox.
const subscriberBuffer = 1024

type subscriber struct {
	account string // "" for all
	ch      chan Event
}

// subscribers fans committed events out to in-process listeners.
type subscribers struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool // the store is closed: new subscribers get a closed channel
	buffer int  // channel capacity; 0: subscriberBuffer (tests lower it)
	seq    atomic.Uint64
}

// EventSeq returns the Seq of the last event published.
func (s *boltStore) EventSeq() uint64 { return s.subs.seq.Load() }

// Subscribe returns a channel of events for one account ("" for all) and
// a func that ends the subscription and closes the channel. The channel
// is also closed when the subscriber falls behind by more than its
// buffer, or when the store is closed.
func (s *boltStore) Subscribe(account string) (<-chan Event, func()) {
	ss := &s.subs
	ss.mu.Lock()
	n := ss.buffer
	if n <= 0 {
		n = subscriberBuffer
	}
	sub := &subscriber{account: strings.ToLower(strings.TrimSpace(account)), ch: make(chan Event, n)}
	if ss.closed {
		ss.mu.Unlock()
		close(sub.ch)
		return sub.ch, func() {}
	}
	if ss.subs == nil {
		ss.subs = make(map[*subscriber]struct{})
	}
	ss.subs[sub] = struct{}{}
	ss.mu.Unlock()
	return sub.ch, func() { ss.remove(sub) }
}

func (ss *subscribers) remove(sub *subscriber) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, ok := ss.subs[sub]; ok {
		delete(ss.subs, sub)
		close(sub.ch)
	}
}

// publish delivers events without ever blocking: a full subscriber is
// dropped (its channel closed). Callers hold boltStore.commitMu, so
// events are published in commit order.
func (ss *subscribers) publish(events []Event) {
	if len(events) == 0 {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, e := range events {
		e.Seq = ss.seq.Load() + 1
		// Stored before the sends: a reader of EventSeq that then waits
		// for this Seq finds it in its channel.
		ss.seq.Store(e.Seq)
		for sub := range ss.subs {
			if sub.account != "" && sub.account != e.Account {
				continue
			}
			select {
			case sub.ch <- e:
			default:
				delete(ss.subs, sub)
				close(sub.ch)
			}
		}
	}
}

func (ss *subscribers) closeAll() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.closed = true
	for sub := range ss.subs {
		delete(ss.subs, sub)
		close(sub.ch)
	}
}
