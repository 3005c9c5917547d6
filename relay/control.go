package relay

import (
	"net/http"
	"sort"
	"time"

	"github.com/mediaedge/mediaedge/internal/control"
)

// AllocationInfo is one live allocation in GET /v1/relay/allocations.
type AllocationInfo struct {
	ID              uint64    `json:"id"`
	User            string    `json:"user"`
	Client          string    `json:"client"`
	Transport       string    `json:"transport"`
	Listener        string    `json:"listener"`
	Relay           string    `json:"relay"`
	RelayProtocol   string    `json:"relay_protocol"`
	Created         time.Time `json:"created"`
	AgeSeconds      float64   `json:"age_seconds"`
	Permissions     int       `json:"permissions"`
	Channels        int       `json:"channels"`
	PacketsToPeer   uint64    `json:"packets_to_peer"`
	BytesToPeer     uint64    `json:"bytes_to_peer"`
	PacketsToClient uint64    `json:"packets_to_client"`
	BytesToClient   uint64    `json:"bytes_to_client"`
}

// AllocationList is the body of GET /v1/relay/allocations.
type AllocationList struct {
	Allocations []AllocationInfo `json:"allocations"`
}

// Allocations lists the live allocations, oldest first.
func (s *Server) Allocations() []AllocationInfo {
	s.mu.Lock()
	as := make([]*alloc, 0, len(s.allocs))
	for _, a := range s.allocs {
		as = append(as, a)
	}
	s.mu.Unlock()
	out := make([]AllocationInfo, 0, len(as))
	now := time.Now()
	for _, a := range as {
		r := a.route.Load()
		if r == nil {
			continue // still being created
		}
		t := a.table.Load()
		out = append(out, AllocationInfo{
			ID:              a.id,
			User:            a.user,
			Client:          r.client.String(),
			Transport:       r.transport,
			Listener:        r.listener.String(),
			Relay:           a.advAddr.String(),
			RelayProtocol:   a.proto,
			Created:         a.created,
			AgeSeconds:      now.Sub(a.created).Seconds(),
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
