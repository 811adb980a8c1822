package store

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/emersion/go-imap/v2"
)

// Body structure tags in the BlobInfo encoding.
const (
	tagNone   = 0
	tagSingle = 1
	tagMulti  = 2
)

// maxDecodeDepth bounds recursion when decoding a (possibly corrupt)
// record; parsing never nests deeper than this either.
const maxDecodeDepth = 1000

func encodeBlobInfo(bi BlobInfo) []byte {
	e := enc{b: make([]byte, 0, 256)}
	e.b = append(e.b, blobInfoVersion)
	e.varint(bi.Size)
	e.varint(bi.HeaderLen)
	e.envelope(bi.Envelope)
	e.bodyStructure(bi.BodyStructure)
	return e.b
}

func decodeBlobInfo(id uint64, v []byte) (BlobInfo, error) {
	d := newDec(v)
	if d.byte1() != blobInfoVersion {
		return BlobInfo{}, fmt.Errorf("%w: blob info %d version", errCorrupt, id)
	}
	bi := BlobInfo{ID: id}
	bi.Size = d.varint()
	bi.HeaderLen = d.varint()
	bi.Envelope = d.envelope()
	bi.BodyStructure = d.bodyStructure(0)
	if d.err != nil {
		return BlobInfo{}, fmt.Errorf("blob info %d: %w", id, d.err)
	}
	return bi, nil
}

// blobInfoLens decodes only the sizes at the front of an encoded BlobInfo,
// for readers that need no ENVELOPE or BODYSTRUCTURE.
func blobInfoLens(id uint64, v []byte) (size, headerLen int64, err error) {
	if len(v) < 1 || v[0] != blobInfoVersion {
		return 0, 0, fmt.Errorf("%w: blob info %d version", errCorrupt, id)
	}
	v = v[1:]
	size, n := binary.Varint(v)
	if n <= 0 {
		return 0, 0, fmt.Errorf("%w: blob info %d size", errCorrupt, id)
	}
	headerLen, m := binary.Varint(v[n:])
	if m <= 0 {
		return 0, 0, fmt.Errorf("%w: blob info %d header length", errCorrupt, id)
	}
	return size, headerLen, nil
}

func (e *enc) addresses(l []imap.Address) {
	e.uvarint(uint64(len(l)))
	for _, a := range l {
		e.str(a.Name)
		e.str(a.Mailbox)
		e.str(a.Host)
	}
}

func (d *dec) addresses() []imap.Address {
	n := d.count()
	if n == 0 {
		return nil
	}
	l := make([]imap.Address, n)
	for i := range l {
		l[i] = imap.Address{Name: d.str(), Mailbox: d.str(), Host: d.str()}
	}
	return l
}

func (e *enc) envelope(env *imap.Envelope) {
	if env == nil {
		e.boolean(false)
		return
	}
	e.boolean(true)
	e.time(env.Date)
	e.str(env.Subject)
	e.addresses(env.From)
	// Sender and Reply-To usually default to From: one flag byte then.
	for _, l := range [][]imap.Address{env.Sender, env.ReplyTo} {
		same := len(l) > 0 && slices.Equal(l, env.From)
		e.boolean(same)
		if !same {
			e.addresses(l)
		}
	}
	for _, l := range [][]imap.Address{env.To, env.Cc, env.Bcc} {
		e.addresses(l)
	}
	e.strs(env.InReplyTo)
	e.str(env.MessageID)
}

func (d *dec) envelope() *imap.Envelope {
	if !d.boolean() {
		return nil
	}
	env := &imap.Envelope{Date: d.time(), Subject: d.str()}
	env.From = d.addresses()
	env.Sender, env.ReplyTo = env.From, env.From
	if !d.boolean() {
		env.Sender = d.addresses()
	}
	if !d.boolean() {
		env.ReplyTo = d.addresses()
	}
	env.To = d.addresses()
	env.Cc = d.addresses()
	env.Bcc = d.addresses()
	env.InReplyTo = d.strs()
	env.MessageID = d.str()
	return env
}

func (e *enc) disposition(disp *imap.BodyStructureDisposition) {
	if disp == nil {
		e.boolean(false)
		return
	}
	e.boolean(true)
	e.str(disp.Value)
	e.params(disp.Params)
}

func (d *dec) disposition() *imap.BodyStructureDisposition {
	if !d.boolean() {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: d.str(), Params: d.params()}
}

func (e *enc) bodyStructure(bs imap.BodyStructure) {
	switch bs := bs.(type) {
	case *imap.BodyStructureSinglePart:
		e.b = append(e.b, tagSingle)
		e.singlePart(bs)
	case *imap.BodyStructureMultiPart:
		e.b = append(e.b, tagMulti)
		e.uvarint(uint64(len(bs.Children)))
		for _, c := range bs.Children {
			e.bodyStructure(c)
		}
		e.str(bs.Subtype)
		ext := bs.Extended
		if ext == nil {
			ext = &imap.BodyStructureMultiPartExt{}
		}
		e.params(ext.Params)
		e.disposition(ext.Disposition)
		e.strs(ext.Language)
		e.str(ext.Location)
	default:
		e.b = append(e.b, tagNone)
	}
}

func (e *enc) singlePart(bs *imap.BodyStructureSinglePart) {
	e.str(bs.Type)
	e.str(bs.Subtype)
	e.params(bs.Params)
	e.str(bs.ID)
	e.str(bs.Description)
	e.str(bs.Encoding)
	e.uvarint(uint64(bs.Size))
	if m := bs.MessageRFC822; m != nil {
		e.boolean(true)
		e.envelope(m.Envelope)
		e.bodyStructure(m.BodyStructure)
		e.varint(m.NumLines)
	} else {
		e.boolean(false)
	}
	if bs.Text != nil {
		e.boolean(true)
		e.varint(bs.Text.NumLines)
	} else {
		e.boolean(false)
	}
	ext := bs.Extended
	if ext == nil {
		ext = &imap.BodyStructureSinglePartExt{}
	}
	e.disposition(ext.Disposition)
	e.strs(ext.Language)
	e.str(ext.Location)
}

func (d *dec) bodyStructure(depth int) imap.BodyStructure {
	if depth > maxDecodeDepth {
		d.fail()
		return nil
	}
	switch d.byte1() {
	case tagSingle:
		return d.singlePart(depth)
	case tagMulti:
		n := d.count()
		bs := &imap.BodyStructureMultiPart{Children: make([]imap.BodyStructure, 0, n)}
		for i := 0; i < n && d.err == nil; i++ {
			bs.Children = append(bs.Children, d.bodyStructure(depth+1))
		}
		bs.Subtype = d.str()
		bs.Extended = &imap.BodyStructureMultiPartExt{
			Params:      d.params(),
			Disposition: d.disposition(),
			Language:    d.strs(),
			Location:    d.str(),
		}
		return bs
	}
	return nil
}

func (d *dec) singlePart(depth int) *imap.BodyStructureSinglePart {
	bs := &imap.BodyStructureSinglePart{
		Type:        d.str(),
		Subtype:     d.str(),
		Params:      d.params(),
		ID:          d.str(),
		Description: d.str(),
		Encoding:    d.str(),
		Size:        uint32(d.uvarint()),
	}
	if d.boolean() {
		m := &imap.BodyStructureMessageRFC822{Envelope: d.envelope()}
		m.BodyStructure = d.bodyStructure(depth + 1)
		m.NumLines = d.varint()
		bs.MessageRFC822 = m
	}
	if d.boolean() {
		bs.Text = &imap.BodyStructureText{NumLines: d.varint()}
	}
	bs.Extended = &imap.BodyStructureSinglePartExt{
		Disposition: d.disposition(),
		Language:    d.strs(),
		Location:    d.str(),
	}
	return bs
}
