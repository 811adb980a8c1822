package store

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Log records: the operations of one commit, one after the other, each
// a type byte and its arguments in the codec of codec.go. An operation
// replayed on the state it first ran on does the same: its dates are in
// the record, and everything else it decides (UIDs, blob ids, quota) it
// reads from the state.
const (
	opAppend  = 1 // AppendMany: account, mailbox, messages
	opDeliver = 2 // Deliver: body, date, deliveries
)

// maxLogged is the most message bytes one logged operation carries. A
// larger write is made durable in the data file directly (a checkpoint:
// two fdatasyncs, as bbolt's own commit): written to the log as well, a
// large body would cost twice its size in disk bandwidth and copies.
const maxLogged = 64 << 10

// logged tells whether a write of n message bytes goes through the log.
func (s *boltStore) logged(n int) bool { return s.walOn.Load() && n <= maxLogged }

// A record is built in parts: the encoded operation, with the message
// bodies it carries left where the caller has them (the caller waits
// until the record is durable). The log's write buffer is the only copy.
type recordEnc struct {
	enc
	parts [][]byte
}

// body encodes b (as enc.bytes does) by reference.
func (r *recordEnc) body(b []byte) {
	r.uvarint(uint64(len(b)))
	r.parts = append(r.parts, r.b[:len(r.b):len(r.b)], b)
	r.b = r.b[len(r.b):]
}

func (r *recordEnc) done() [][]byte {
	if len(r.b) > 0 {
		r.parts = append(r.parts, r.b)
	}
	return r.parts
}

func appendRecordParts(addr, mailbox string, msgs []NewMessage) [][]byte {
	r := recordEnc{enc: enc{b: make([]byte, 0, 64+len(msgs)*40)}, parts: make([][]byte, 0, 2*len(msgs)+1)}
	r.b = append(r.b, opAppend)
	r.str(addr)
	r.str(mailbox)
	r.uvarint(uint64(len(msgs)))
	for _, m := range msgs {
		r.strs(m.Flags)
		r.time(m.InternalDate)
		r.body(m.Body)
	}
	return r.done()
}

func deliverRecordParts(body []byte, to []Delivery, now time.Time) [][]byte {
	r := recordEnc{enc: enc{b: make([]byte, 0, 64+len(to)*64)}}
	r.b = append(r.b, opDeliver)
	r.body(body)
	r.time(now)
	r.uvarint(uint64(len(to)))
	for _, d := range to {
		r.str(d.Account)
		r.str(d.Mailbox)
		r.strs(d.Flags)
		r.bytes(d.Prefix)
	}
	return r.done()
}

// replay runs the operations of the log's records, in order, in one
// write transaction on the checkpoint the data file was restored to. One
// commit, so that no page the checkpoint uses can be reused before the
// checkpoint that follows.
func (s *boltStore) replay(records [][]byte) error {
	return s.dbUpdate(func(tx *bolt.Tx) error {
		t := &txn{tx: tx, s: s, cache: newDecodeCache()}
		for i, rec := range records {
			if err := s.replayRecord(t, rec); err != nil {
				return fmt.Errorf("record %d of %d: %w", i+1, len(records), err)
			}
		}
		return nil
	})
}

var errBadRecord = errors.New("malformed log record")

// refused tells whether err, of an operation replayed from the log, is
// a refusal (see refusal): one that appendMessages or deliver found
// before writing anything. It was refused live too, by the same state,
// and its transaction committed the rest, so it is skipped. Any other
// error fails the replay.
func (s *boltStore) refused(err error) bool {
	refused, _ := refusedBy(err)
	if refused == nil {
		return false
	}
	s.replaySkipped++
	slog.Info("store: replaying the log: an operation refused before the crash was refused again", "err", refused)
	return true
}

func (s *boltStore) replayRecord(t *txn, rec []byte) error {
	d := newDec(rec)
	for len(d.b) > 0 && d.err == nil {
		switch op := d.byte1(); op {
		case opAppend:
			addr, mailbox := d.str(), d.str()
			msgs := make([]NewMessage, d.count())
			for i := range msgs {
				msgs[i].Flags = d.strs()
				msgs[i].InternalDate = d.time()
				msgs[i].Body = d.bytes()
			}
			if d.err != nil {
				return errBadRecord
			}
			if _, _, err := t.appendMessages(addr, mailbox, msgs, s.parseAll(msgs)); err != nil && !s.refused(err) {
				return err
			}
		case opDeliver:
			body := d.bytes()
			now := d.time()
			to := make([]Delivery, d.count())
			for i := range to {
				to[i].Account = d.str()
				to[i].Mailbox = d.str()
				to[i].Flags = d.strs()
				to[i].Prefix = d.bytes()
			}
			if d.err != nil {
				return errBadRecord
			}
			if _, err := t.deliver(body, parseBlobInfo(body, s.opts), to, now); err != nil && !s.refused(err) {
				return err
			}
		default:
			return fmt.Errorf("%w: operation %d", errBadRecord, op)
		}
	}
	if d.err != nil {
		return errBadRecord
	}
	return nil
}
