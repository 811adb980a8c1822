package server

// wireControl returns the control socket service used by the CLI while
// serve runs.
func (s *Server) wireControl() ([]service, []worker, error) {
	return nil, nil, nil
}
