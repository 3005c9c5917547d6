package relay

import "time"

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
