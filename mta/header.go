package mta

import "bytes"

var crlf = []byte("\r\n")

// headerSplit returns where the header of msg ends without the empty line
// that should end it: the start of its first line that is neither a
// header field ("Name:" with a name of printable ASCII, white space
// allowed before the colon) nor, after one,
// the continuation of a field. It returns -1 when the header ends with its
// empty line, or runs to the end of msg.
func headerSplit(msg []byte) int {
	for i := 0; i < len(msg); {
		line, next := msg[i:], len(msg)
		if j := bytes.IndexByte(line, '\n'); j >= 0 {
			line, next = line[:j], i+j+1
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		switch {
		case len(line) == 0:
			return -1
		case line[0] == ' ' || line[0] == '\t':
			if i == 0 {
				return 0
			}
		default:
			k := 0
			for k < len(line) && line[k] > ' ' && line[k] < 0x7f && line[k] != ':' {
				k++
			}
			name := k
			// White space before the colon is the obsolete syntax
			// (RFC 5322 section 4.5), which receivers must accept.
			for k < len(line) && (line[k] == ' ' || line[k] == '\t') {
				k++
			}
			if name == 0 || k == len(line) || line[k] != ':' {
				return i
			}
		}
		i = next
	}
	return -1
}

// EndHeader returns msg as the parts to put together for its header to end
// with the empty line that should end it, or nil when it does already.
// Postfix puts the line in for all mail, and so does Posthorn:
//   - before the first line that is neither a header field nor the
//     continuation of one (devices and scripts send a header that runs
//     into the body);
//   - after a header that runs to the end (RFC 5322 section 3.5 makes the
//     body optional), the empty message included.
//
// Without it, clients see a message with no body, or no message at all
// (mbsync skips one with an "incomplete header").
func EndHeader(msg []byte) [][]byte {
	switch split := headerSplit(msg); {
	case split >= 0:
		return [][]byte{msg[:split], crlf, msg[split:]}
	case bytes.Contains(msg, []byte("\r\n\r\n")) || bytes.HasPrefix(msg, crlf):
		return nil
	case len(msg) == 0 || bytes.HasSuffix(msg, []byte("\n")):
		return [][]byte{msg, crlf}
	default:
		return [][]byte{msg, crlf, crlf}
	}
}
