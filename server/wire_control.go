package server

import (
	"context"
	"net"

	"github.com/posthorn/posthorn/admin"
	"github.com/posthorn/posthorn/control"
)

// wireControl starts the control socket through which the CLI administers
// the running server. It is a worker, not a TCP service: the socket lives
// in data_dir with mode 0600.
func (s *Server) wireControl() ([]service, []worker, error) {
	ln, err := control.Listen(s.Config.DataPath(control.SocketName))
	if err != nil {
		return nil, nil, err
	}
	cs := &control.Server{
		Env:    &admin.Env{Store: s.Store, Config: s.Config, Queue: s.adminQueue(), Logger: s.Logger},
		Logger: s.Logger,
	}
	w := worker{name: "control", run: func(ctx context.Context) error {
		go func() { <-ctx.Done(); ln.Close() }()
		err := cs.Serve(ln)
		if ctx.Err() != nil {
			return nil
		}
		if ne, ok := err.(*net.OpError); ok && ne.Err != nil {
			return nil
		}
		return err
	}}
	return nil, []worker{w}, nil
}
