package server

// wireMTA returns the inbound SMTP listener (port 25). Owned by the mta
// implementation.
func (s *Server) wireMTA() ([]service, []worker, error) {
	return []service{{name: "smtp", addr: s.Config.Listen.SMTP}}, nil, nil
}
