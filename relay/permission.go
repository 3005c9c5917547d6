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

// peerDenied counts and logs a refused peer, naming the configuration key
// that would admit it. CreatePermission and ChannelBind get a 403 with the
// reason from inspectPeers; a refusal through permit (Connect, or a
// request inspect let through) gets pion's bare 403: PermissionHandler
// returns a bool only.
func (s *Server) peerDenied(reason string, client net.Addr, peer string) {
	s.metrics.denied.WithLabelValues(reason).Inc()
	if s.auth.logRate.allow() {
		s.log.Info("peer refused by policy (403)", "reason", reason, "client", addrString(client), "peer", peer,
			"key", peerPolicyKey(reason))
	}
}

// peerPolicyKey names the configuration key an admin changes to admit a
// peer refused for reason.
func peerPolicyKey(reason string) string {
	switch reason {
	case reasonDeniedPeers:
		return "relay.denied_peers"
	case reasonInvalid, reasonFamily:
		return ""
	}
	return "relay.allowed_peers"
}
