package fastpath

import (
	"encoding/binary"
	"net/netip"
)

// Entry is one forwardable channel: the client reaches the relay at Listener
// with ChannelData on Channel; the relay sends to Peer from Relay, with Mark
// as the packets' SO_MARK. Entries are plain values, safe to copy.
type Entry struct {
	Client   netip.AddrPort
	Listener netip.AddrPort
	Relay    netip.AddrPort
	Peer     netip.AddrPort
	Channel  uint16
	Mark     uint32
}

// Counters are what the kernel forwarded for one entry: datagrams and
// application bytes (ChannelData headers and padding not counted).
type Counters struct {
	ToPeerPackets, ToPeerBytes     uint64
	ToClientPackets, ToClientBytes uint64
}

func (e Entry) ipv4() bool {
	for _, ap := range [...]netip.AddrPort{e.Client, e.Listener, e.Relay, e.Peer} {
		if !ap.Addr().Unmap().Is4() {
			return false
		}
	}
	return e.Channel >= 0x4000 && e.Channel <= 0x7fff
}

// be32 and be16 return the value whose in-memory bytes are the address or
// port in network order, as the BPF program compares them.
func be32(a netip.Addr) uint32 {
	b := a.Unmap().As4()
	return binary.NativeEndian.Uint32(b[:])
}

// addr4 and port undo be32 and be16.
func addr4(v uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func port(v uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], v)
	return binary.BigEndian.Uint16(b[:])
}

func be16(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

func (e Entry) c2pKey() turnfwdC2pKey {
	return turnfwdC2pKey{
		ClientIp: be32(e.Client.Addr()), ListenIp: be32(e.Listener.Addr()),
		ClientPort: be16(e.Client.Port()), ListenPort: be16(e.Listener.Port()),
		Channel: e.Channel,
	}
}

func (e Entry) c2pVal() turnfwdFwdVal {
	return turnfwdFwdVal{
		SrcIp: be32(e.Relay.Addr()), DstIp: be32(e.Peer.Addr()),
		SrcPort: be16(e.Relay.Port()), DstPort: be16(e.Peer.Port()),
		Mark: e.Mark,
	}
}

func (e Entry) p2cKey() turnfwdP2cKey {
	return turnfwdP2cKey{
		PeerIp: be32(e.Peer.Addr()), RelayIp: be32(e.Relay.Addr()),
		PeerPort: be16(e.Peer.Port()), RelayPort: be16(e.Relay.Port()),
	}
}

func (e Entry) p2cVal() turnfwdFwdVal {
	return turnfwdFwdVal{
		SrcIp: be32(e.Listener.Addr()), DstIp: be32(e.Client.Addr()),
		SrcPort: be16(e.Listener.Port()), DstPort: be16(e.Client.Port()),
		Channel: e.Channel, Mark: e.Mark,
	}
}
