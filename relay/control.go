package relay

import (
	"net/http"
	"sort"

	"github.com/mediaedge/mediaedge/internal/control"
)

// Allocations lists the live allocations, oldest first.
func (s *Server) Allocations() []AllocationInfo {
	s.mu.Lock()
	as := make([]*alloc, 0, len(s.allocs))
	for _, a := range s.allocs {
		as = append(as, a)
	}
	s.mu.Unlock()
	out := make([]AllocationInfo, 0, len(as))
	for _, a := range as {
		r := a.route.Load()
		if r == nil {
			continue // still being created
		}
		t := a.table.Load()
		out = append(out, AllocationInfo{
			ID:              a.id,
			User:            a.user(),
			Client:          r.client.String(),
			Transport:       r.transport,
			Listener:        r.listener.String(),
			Relay:           a.advAddr().String(),
			RelayProtocol:   a.proto(),
			Created:         a.createdAt(),
			AgeSeconds:      a.age().Seconds(),
			Permissions:     len(t.perms),
			Channels:        len(t.chans),
			PacketsToPeer:   a.packets[dirToPeer].Load(),
			BytesToPeer:     a.bytes[dirToPeer].Load(),
			PacketsToClient: a.packets[dirToClient].Load(),
			BytesToClient:   a.bytes[dirToClient].Load(),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (s *Server) serveAllocations(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	state := s.state
	s.mu.Unlock()
	if state != "running" {
		control.WriteError(w, http.StatusServiceUnavailable, control.CodeUnavailable, "relay is "+state)
		return
	}
	control.WriteJSON(w, http.StatusOK, AllocationList{Allocations: s.Allocations()})
}
