package server

// wireIMAP returns the IMAP listeners (143, 993). Owned by maa/imap.
func (s *Server) wireIMAP() ([]service, []worker, error) {
	return []service{
		{name: "imap", addr: s.Config.Listen.IMAP},
		{name: "imaps", addr: s.Config.Listen.IMAPS, implicitTLS: true},
	}, nil, nil
}
