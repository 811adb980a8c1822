package server

// wireHTTP returns the HTTP listener (autoconfig, MTA-STS) and the metrics
// listener. Owned by the web implementation.
func (s *Server) wireHTTP() ([]service, []worker, error) {
	return []service{
		{name: "http", addr: s.Config.Listen.HTTP},
		{name: "metrics", addr: s.Config.Listen.Metrics},
	}, nil, nil
}
