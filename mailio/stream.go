package mailio

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/posthorn/posthorn/store"
)

// An import is two halves joined by a stream: the reading of the mbox
// file or Maildir directory (EncodeMbox, EncodeMaildir), which the CLI
// does with its own user's rights, and the appending to the store
// (Import), which the server does, sandboxed as deploy/posthorn.service
// runs it, with no access to the files named on the command line. The
// control socket carries the stream between them; without a server, the
// CLI joins the two halves with a pipe. The stream is a sequence of
// records:
//
//	create:  'c' str(mailbox)
//	subscribe: 'u' str(mailbox)     (a mailbox created before)
//	message: 'm' str(mailbox) str(where) uvarint(n) n*str(flag) str(date) bytes(body)
//	skipped: 's' str(where) str(reason)
//	end:     'e' str(error)        ("" when the source was read whole)
//
// str is a uvarint length and at most maxField bytes, bytes a uvarint
// length and at most maxMessageBytes; date is time.MarshalBinary's. A
// stream that ends without its end record was cut off.

const (
	recCreate    = 'c'
	recSubscribe = 'u'
	recMessage   = 'm'
	recSkipped   = 's'
	recEnd       = 'e'

	maxField = 64 << 10
	maxFlags = 1000
)

// errCutOff: the stream ended before its end record.
var errCutOff = errors.New("the import stream ended early")

// sink takes what a reader of mbox files or Maildirs finds, in order:
// the appender (which stores it) or an itemWriter (which encodes it).
type sink interface {
	create(mailbox string) error
	subscribe(mailbox string) error
	add(j job) bool // false once the import has stopped
	skip(where string, err error) bool
}

// itemWriter encodes a sink's items as the stream.
type itemWriter struct {
	w   *bufio.Writer
	err error
}

func newItemWriter(w io.Writer) *itemWriter {
	return &itemWriter{w: bufio.NewWriterSize(w, 64<<10)}
}

// str and bytes write a field; bufio.Writer keeps the first write error,
// so the last write of a record has it.
func (w *itemWriter) str(s string) {
	var n [binary.MaxVarintLen64]byte
	w.w.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
	_, w.err = w.w.WriteString(s)
}

func (w *itemWriter) bytes(b []byte) {
	var n [binary.MaxVarintLen64]byte
	w.w.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))])
	_, w.err = w.w.Write(b)
}

func (w *itemWriter) create(mailbox string) error {
	w.w.WriteByte(recCreate)
	w.str(mailbox)
	return w.err
}

func (w *itemWriter) subscribe(mailbox string) error {
	w.w.WriteByte(recSubscribe)
	w.str(mailbox)
	return w.err
}

func (w *itemWriter) add(j job) bool {
	date, err := j.msg.InternalDate.MarshalBinary()
	if err != nil {
		// A zone offset of no whole minute: keep the instant.
		date, _ = j.msg.InternalDate.UTC().MarshalBinary()
	}
	w.w.WriteByte(recMessage)
	w.str(j.mailbox)
	w.str(j.where)
	var n [binary.MaxVarintLen64]byte
	w.w.Write(n[:binary.PutUvarint(n[:], uint64(len(j.msg.Flags)))])
	for _, f := range j.msg.Flags {
		w.str(f)
	}
	w.str(string(date))
	w.bytes(j.msg.Body)
	return w.err == nil
}

func (w *itemWriter) skip(where string, err error) bool {
	w.w.WriteByte(recSkipped)
	w.str(where)
	w.str(err.Error())
	return w.err == nil
}

// end writes the end record, with the reading's error if any, and
// flushes the stream.
func (w *itemWriter) end(err error) error {
	if w.err != nil {
		return w.err
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	w.w.WriteByte(recEnd)
	w.str(msg)
	return w.w.Flush()
}

// EncodeMbox reads an mbox file (see ImportMbox) from r and writes what
// it holds to w as an import stream for mailbox ("" means INBOX). It
// returns the error of reading r (also sent in the stream) or of writing w.
func EncodeMbox(w io.Writer, r io.Reader, mailbox string) error {
	return EncodeMboxFormat(w, r, mailbox, MboxRD)
}

// EncodeMaildir reads a Maildir++ directory (see ImportMaildir) and
// writes what it holds to w as an import stream.
func EncodeMaildir(w io.Writer, dir string) error {
	iw := newItemWriter(w)
	err := readMaildir(iw, dir)
	if werr := iw.end(err); werr != nil {
		return werr
	}
	return err
}

// Import appends what an import stream read from r holds to account:
// mailboxes are created when missing, messages appended in their order,
// in batches (see the package comment). Messages that the reading
// skipped, or that the store refuses one by one, are listed in
// Result.Errors; an error is returned only when the import as a whole
// stopped (the source could not be read, account unknown, over quota, ctx
// cancelled), and then Result still counts what was imported.
func Import(ctx context.Context, st store.Store, r io.Reader, account string, progress Progress) (Result, error) {
	if _, err := st.Account(account); err != nil {
		return Result{}, fmt.Errorf("account %s: %w", account, err)
	}
	a := newAppender(ctx, st, account, progress)
	rerr := decodeItems(r, a)
	res, err := a.finish()
	if err == nil {
		err = rerr
	}
	return res, err
}

// decodeItems reads an import stream into s until its end record; it
// returns the source's error that record carries, or a read error.
func decodeItems(r io.Reader, s sink) error {
	d := itemReader{r: bufio.NewReaderSize(r, 64<<10)}
	for {
		kind, err := d.r.ReadByte()
		if err != nil {
			return d.fail(err)
		}
		switch kind {
		case recCreate:
			name := d.str()
			if d.err != nil {
				return d.fail(d.err)
			}
			if err := s.create(name); err != nil {
				return err
			}
		case recSubscribe:
			name := d.str()
			if d.err != nil {
				return d.fail(d.err)
			}
			if err := s.subscribe(name); err != nil {
				return err
			}
		case recMessage:
			var j job
			j.mailbox, j.where = d.str(), d.str()
			n := d.uvarint()
			if n > maxFlags {
				return fmt.Errorf("import stream: %d flags on one message", n)
			}
			for range n {
				j.msg.Flags = append(j.msg.Flags, d.str())
			}
			if date := d.str(); d.err == nil {
				d.err = j.msg.InternalDate.UnmarshalBinary([]byte(date))
			}
			j.msg.Body = d.bytes()
			if d.err != nil {
				return d.fail(d.err)
			}
			if !s.add(j) {
				return nil
			}
		case recSkipped:
			where, reason := d.str(), d.str()
			if d.err != nil {
				return d.fail(d.err)
			}
			if !s.skip(where, errors.New(reason)) {
				return nil
			}
		case recEnd:
			msg := d.str()
			if d.err != nil {
				return d.fail(d.err)
			}
			if msg != "" {
				return errors.New(msg)
			}
			return nil
		default:
			return fmt.Errorf("import stream: unknown record %q", kind)
		}
	}
}

// itemReader decodes the fields of records; the first error sticks.
type itemReader struct {
	r   *bufio.Reader
	err error
}

func (d *itemReader) fail(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errCutOff
	}
	return err
}

func (d *itemReader) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	var n uint64
	n, d.err = binary.ReadUvarint(d.r)
	return n
}

func (d *itemReader) field(max int) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(max) {
		d.err = fmt.Errorf("import stream: a field of %d bytes (at most %d)", n, max)
		return nil
	}
	b := make([]byte, n)
	_, d.err = io.ReadFull(d.r, b)
	return b
}

func (d *itemReader) str() string   { return string(d.field(maxField)) }
func (d *itemReader) bytes() []byte { return d.field(maxMessageBytes) }

// pipeImport runs encode, a reader of a source, into Import through a
// pipe: the same two halves as over the control socket.
func pipeImport(ctx context.Context, st store.Store, account string, progress Progress, encode func(io.Writer) error) (Result, error) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(encode(pw))
	}()
	res, err := Import(ctx, st, pr, account, progress)
	pr.CloseWithError(errImportStopped) // an import that stopped early stops the reading
	<-done
	return res, err
}

var errImportStopped = errors.New("the import stopped")
