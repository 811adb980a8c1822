// Package control is the control socket through which the CLI reaches a
// running `posthorn serve`: bbolt lets one process open the data file, so
// while the server runs the CLI sends it admin commands instead.
//
// Implementation notes: a Unix socket data_dir/control.sock, mode 0600; the
// peer's uid (SO_PEERCRED) must be the server's own uid or root. One JSON
// request per connection, answered by one JSON response carrying the
// command's output text or its error.
package control

import (
	"bytes"
	"context"
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
	var req admin.Request
	if err := json.NewDecoder(io.LimitReader(c, maxRequest)).Decode(&req); err != nil {
		json.NewEncoder(c).Encode(Response{Error: "bad request: " + err.Error()})
		return
	}
	c.SetReadDeadline(time.Time{})
	var out bytes.Buffer
	err = admin.Execute(context.Background(), s.Env, req, &out)
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

// Call sends one request to the server behind path. It returns
// ErrNoServer when nothing listens there.
func Call(path string, req admin.Request) (Response, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return Response{}, ErrNoServer
	}
	defer c.Close()
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Response{}, err
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return Response{}, fmt.Errorf("reading the server's answer: %w", err)
	}
	return resp, nil
}
