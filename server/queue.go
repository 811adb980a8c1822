package server

import "github.com/posthorn/posthorn/admin"

// adminQueue is the running outbound queue as the admin commands see it;
// nil until the outbound queue is wired.
func (s *Server) adminQueue() admin.Queue {
	if s.queue == nil {
		return nil
	}
	return s.queue
}
