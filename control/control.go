// Package control is the control socket through which the CLI reaches a
// running `posthorn serve`: bbolt lets one process open the data file, so
// while the server runs the CLI sends it admin commands instead.
//
// Implementation notes: a Unix socket data_dir/control.sock, mode 0600; the
// peer's uid (SO_PEERCRED) must be the server's own uid or root. One JSON
// request per connection, on one line, answered by one JSON response
// carrying the command's output text or its error. A command with data
// (admin.Request's Upload and Download: import, backup, export) has them
// in frames, the upload's after the request line, the download's before
// the response: each frame a 4-byte big-endian length and that many
// bytes, the stream ended by a frame of length 0. The server thus reads
// and writes no file the CLI names: the CLI, with its own rights, does.
package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/posthorn/posthorn/admin"
)

// SocketName is the socket's file name inside data_dir.
const SocketName = "control.sock"

// maxRequest bounds one request.
const maxRequest = 1 << 20

// Response is the server's answer.
type Response struct {
	Output string
	Error  string `json:",omitempty"`
	Usage  bool   `json:",omitempty"` // Error is a usage error
}

// Server answers the CLI.
type Server struct {
	Env    *admin.Env
	Logger *slog.Logger
}

// Listen creates the socket at path (removing a stale one) with mode 0600.
func Listen(path string) (*net.UnixListener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another posthorn serve is running on this data_dir (%s answers)", path)
	}
	os.Remove(path)
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Serve answers requests until ln is closed.
func (s *Server) Serve(ln *net.UnixListener) error {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return err
		}
		go s.handle(c)
	}
}

func peerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	uid := -1
	var serr error
	err = raw.Control(func(fd uintptr) {
		cred, e := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if e != nil {
			serr = e
			return
		}
		uid = int(cred.Uid)
	})
	if err == nil {
		err = serr
	}
	return uid, err
}

func (s *Server) handle(c *net.UnixConn) {
	defer c.Close()
	defer func() {
		if r := recover(); r != nil {
			s.Logger.Error("control request panicked", "panic", r)
		}
	}()
	uid, err := peerUID(c)
	if err != nil || (uid != os.Getuid() && uid != 0) {
		s.Logger.Warn("control socket: peer refused", "uid", uid, "err", err)
		json.NewEncoder(c).Encode(Response{Error: "permission denied"})
		return
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReaderSize(c, 64<<10)
	var req admin.Request
	line, err := readLine(br, maxRequest)
	if err == nil {
		err = json.Unmarshal(line, &req)
	}
	if err != nil {
		json.NewEncoder(c).Encode(Response{Error: "bad request: " + err.Error()})
		return
	}
	c.SetReadDeadline(time.Time{})
	if req.HasUpload {
		req.Upload = &frameReader{r: br}
	}
	var down *frameWriter
	if req.HasDownload {
		down = newFrameWriter(c)
		req.Download = down
	}
	var out bytes.Buffer
	err = admin.Execute(context.Background(), s.Env, req, &out)
	if down != nil {
		// The end of the data, also after a failure: the answer follows.
		if cerr := down.Close(); cerr != nil {
			s.Logger.Info("control command: the CLI stopped reading", "command", req.Command, "err", cerr)
			return
		}
	}
	resp := Response{Output: out.String()}
	if err != nil {
		resp.Error = err.Error()
		var ue *admin.UsageError
		resp.Usage = errors.As(err, &ue)
	}
	s.Logger.Info("control command", "command", req.Command, "ok", err == nil)
	json.NewEncoder(c).Encode(resp)
}

// ErrNoServer means no server answers on the socket.
var ErrNoServer = errors.New("no server answers on the control socket")

// Call sends one request to the server behind path, with its upload,
// and writes its download to req.Download. It returns ErrNoServer when
// nothing listens there.
func Call(path string, req admin.Request) (Response, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return Response{}, ErrNoServer
	}
	defer c.Close()
	req.HasUpload, req.HasDownload = req.Upload != nil, req.Download != nil
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Response{}, err
	}
	if req.Upload != nil {
		// The server may answer before it has read everything (an
		// unknown user): the answer is read meanwhile, and this ends
		// with a write error once the connection is closed.
		go func() {
			w := newFrameWriter(c)
			if _, err := io.Copy(w, req.Upload); err == nil {
				w.Close()
			}
		}()
	}
	br := bufio.NewReaderSize(c, 64<<10)
	if req.Download != nil {
		if _, err := io.Copy(req.Download, &frameReader{r: br}); err != nil {
			return Response{}, fmt.Errorf("reading the server's data: %w", err)
		}
	}
	var resp Response
	if err := json.NewDecoder(br).Decode(&resp); err != nil {
		return Response{}, fmt.Errorf("reading the server's answer: %w", err)
	}
	return resp, nil
}

// readLine reads one line of at most max bytes.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		b, err := br.ReadSlice('\n')
		line = append(line, b...)
		if len(line) > max {
			return nil, fmt.Errorf("request longer than %d bytes", max)
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return line, err
		}
	}
}

// maxFrame bounds one frame.
const maxFrame = 1 << 20

// frameWriter writes a stream as frames of up to 64 KiB.
type frameWriter struct {
	w   io.Writer
	buf []byte
}

func newFrameWriter(w io.Writer) *frameWriter {
	return &frameWriter{w: w, buf: make([]byte, 4, 4+64<<10)}
}

func (f *frameWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), cap(f.buf)-len(f.buf))
		f.buf = append(f.buf, p[:k]...)
		p, n = p[k:], n+k
		if len(f.buf) == cap(f.buf) {
			if err := f.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (f *frameWriter) flush() error {
	if len(f.buf) == 4 {
		return nil
	}
	binary.BigEndian.PutUint32(f.buf, uint32(len(f.buf)-4))
	_, err := f.w.Write(f.buf)
	f.buf = f.buf[:4]
	return err
}

// Close writes what is buffered and the end frame.
func (f *frameWriter) Close() error {
	if err := f.flush(); err != nil {
		return err
	}
	_, err := f.w.Write([]byte{0, 0, 0, 0})
	return err
}

// frameReader reads a stream of frames up to its end frame.
type frameReader struct {
	r    *bufio.Reader
	left int // of the current frame
	done bool
}

func (f *frameReader) Read(p []byte) (int, error) {
	for f.left == 0 {
		if f.done {
			return 0, io.EOF
		}
		var h [4]byte
		if _, err := io.ReadFull(f.r, h[:]); err != nil {
			return 0, fmt.Errorf("data cut off: %w", io.ErrUnexpectedEOF)
		}
		n := binary.BigEndian.Uint32(h[:])
		if n > maxFrame {
			return 0, fmt.Errorf("a frame of %d bytes", n)
		}
		f.left, f.done = int(n), n == 0
	}
	n, err := f.r.Read(p[:min(len(p), f.left)])
	f.left -= n
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("data cut off: %w", io.ErrUnexpectedEOF)
	}
	return n, err
}
