package server

// wirePOP3 returns the POP3 listeners (110, 995). Owned by maa/pop3.
func (s *Server) wirePOP3() ([]service, []worker, error) {
	return []service{
		{name: "pop3", addr: s.Config.Listen.POP3},
		{name: "pop3s", addr: s.Config.Listen.POP3S, implicitTLS: true},
	}, nil, nil
}
