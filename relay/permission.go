package relay

import "net"

// permit is pion's PermissionHandler: the peer policy, for
// CreatePermission, ChannelBind and Connect.
func (s *Server) permit(client net.Addr, peer net.IP) bool {
	reason := s.policy.Load().PeerIP(peer)
	if reason == reasonNone {
		return true
	}
	s.peerDenied(reason, client, peer.String())
	return false
}

// peerDenied counts and logs a refused peer.
func (s *Server) peerDenied(reason string, client net.Addr, peer string) {
	s.metrics.denied.WithLabelValues(reason).Inc()
	if s.auth.logRate.allow() {
		s.log.Info("peer refused by policy (403)", "reason", reason, "client", addrString(client), "peer", peer)
	}
}
