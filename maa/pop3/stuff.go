package pop3

import (
	"bufio"
	"bytes"
)

// dotWriter writes a message as a POP3 multi-line response body
// (RFC 1939 section 3): a line that starts with "." gets another "."
// in front, and finish ends the response with ".\r\n" on a line of its
// own. A line start is any byte after LF, so even a bare LF cannot make a
// "." line that ends the response early.
//
// For TOP, it stops after the header, the blank line and lines body
// lines (RFC 1939 section 7), and sets done.
type dotWriter struct {
	w   *bufio.Writer
	bol bool // at the beginning of a line

	top      bool // TOP: count lines
	inHeader bool // TOP: still in the header
	empty    bool // TOP: the current line has only CR so far
	lines    int  // TOP: body lines still to send
	done     bool // TOP: sent all it should
}

var lfDot = []byte("\n.")

// write sends p, which continues the message.
func (d *dotWriter) write(p []byte) error {
	if d.top {
		return d.writeLines(p)
	}
	// Fast path for RETR: copy everything, splitting only before a "."
	// at a line start.
	if len(p) == 0 {
		return nil
	}
	if d.bol && p[0] == '.' {
		d.w.WriteByte('.')
	}
	last := p[len(p)-1]
	for {
		i := bytes.Index(p, lfDot)
		if i < 0 {
			break
		}
		d.w.Write(p[:i+1])
		d.w.WriteByte('.')
		p = p[i+1:]
	}
	_, err := d.w.Write(p)
	d.bol = last == '\n'
	return err
}

// writeLines is the line-counting path for TOP.
func (d *dotWriter) writeLines(p []byte) error {
	for len(p) > 0 && !d.done {
		if d.bol {
			if p[0] == '.' {
				d.w.WriteByte('.')
			}
			d.bol = false
			d.empty = true
		}
		seg := p
		eol := false
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			seg, eol = p[:i+1], true
		}
		p = p[len(seg):]
		if d.empty && len(bytes.Trim(seg, "\r\n")) > 0 {
			d.empty = false
		}
		if _, err := d.w.Write(seg); err != nil {
			return err
		}
		if eol {
			d.bol = true
			d.endLine()
		}
	}
	return nil
}

// endLine counts one complete line for TOP.
func (d *dotWriter) endLine() {
	if d.inHeader {
		if d.empty {
			d.inHeader = false
			d.done = d.lines == 0
		}
		return
	}
	d.lines--
	d.done = d.lines <= 0
}

// finish ends the last line if it was not ended and writes the
// terminating ".\r\n".
func (d *dotWriter) finish() error {
	if !d.bol {
		d.w.WriteString("\r\n")
	}
	_, err := d.w.WriteString(".\r\n")
	return err
}
