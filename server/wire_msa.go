package server

// wireMSA returns the submission listeners (587, 465) and the outbound
// queue workers. Owned by the msa/outbound implementation.
func (s *Server) wireMSA() ([]service, []worker, error) {
	return []service{
		{name: "submission", addr: s.Config.Listen.Submission},
		{name: "submissions", addr: s.Config.Listen.Submissions, implicitTLS: true},
	}, nil, nil
}
