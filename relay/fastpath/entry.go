package fastpath

import (
	"encoding/binary"
	"net/netip"
)

// Entry is one forwardable channel: the client reaches the relay at Listener
// with ChannelData on Channel; the relay sends to Peer from Relay, with Mark
// as the packets' SO_MARK. Bitrate, if not 0, caps each direction of the
// allocation (every entry with this Relay address shares its two token
// buckets) in bits per second, as the user-space relay's
// bitrate_per_allocation does; UserBitrate, if not 0, caps each direction
// of the sum of User's entries, as bitrate_per_user does. Datagrams over a
// cap are dropped and counted. Entries are plain values, safe to copy.
type Entry struct {
	Client      netip.AddrPort
	Listener    netip.AddrPort
	Relay       netip.AddrPort
	Peer        netip.AddrPort
	Channel     uint16
	Mark        uint32
	Bitrate     uint64
	User        string
	UserBitrate uint64
}

// Counters are what the kernel forwarded for one entry: datagrams and
// application bytes (ChannelData headers and padding not counted), and the
// datagrams it dropped over the bitrate cap.
type Counters struct {
	ToPeerPackets, ToPeerBytes     uint64
	ToClientPackets, ToClientBytes uint64
	ToPeerDropped, ToClientDropped uint64
}

// bucketID is the key of the kernel token bucket of the allocation whose
// relay address is relay, for direction dir (0 toward the peer, 1 toward
// the client): relay addresses are unique among live allocations, one
// bind address per family. 0 means no bucket.
func bucketID(relay netip.AddrPort, dir uint32) uint32 {
	var v6 uint32
	if !relay.Addr().Unmap().Is4() {
		v6 = 1
	}
	return 1 + (uint32(relay.Port())<<2 | v6<<1 | dir)
}

// userBucketBase is where users' bucket keys start, above every
// allocation's (bucketID); user n has base userBucketBase + 2n.
const userBucketBase = 1 << 20

// userBucket is the key of direction dir of the user bucket pair at base,
// 0 for none.
func userBucket(base, dir uint32) uint32 {
	if base == 0 {
		return 0
	}
	return base + dir
}

// newBucket is a full kernel bucket for bitrate bits per second, the burst
// as the user-space relay's: 200 ms of traffic, at least 16 KiB.
func newBucket(bitrate uint64) turnfwdBucket {
	rate := max(bitrate/8, 1)
	burst := max(rate/5, 16<<10)
	c := burst * 1e9
	return turnfwdBucket{Rate: rate, Cap: c, FillNs: c/rate + 1, Tokens: c}
}

// valid reports whether the program can forward e: all four addresses of
// one family (IPv4, or IPv4-mapped IPv6 taken as IPv4; or IPv6), since
// the program rewrites addresses in place and never changes the IP
// version, and a channel number in the ChannelData range.
func (e Entry) valid() bool {
	v4 := e.Client.Addr().Unmap().Is4()
	for _, ap := range [...]netip.AddrPort{e.Client, e.Listener, e.Relay, e.Peer} {
		a := ap.Addr().Unmap()
		if !a.IsValid() || a.Is4() != v4 {
			return false
		}
	}
	return e.Channel >= 0x4000 && e.Channel <= 0x7fff
}

// addr16 is a as the program's maps hold it: 16 bytes, IPv4 as
// ::ffff:a.b.c.d (in network order, as on the wire).
func addr16(a netip.Addr) [16]byte { return a.Unmap().As16() }

// addrOf undoes addr16.
func addrOf(b [16]byte) netip.Addr { return netip.AddrFrom16(b).Unmap() }

// port undoes be16.
func port(v uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], v)
	return binary.BigEndian.Uint16(b[:])
}

// be16 returns the value whose in-memory bytes are p in network order, as
// the BPF program compares ports.
func be16(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

func (e Entry) c2pKey() turnfwdC2pKey {
	return turnfwdC2pKey{
		ClientIp: addr16(e.Client.Addr()), ListenIp: addr16(e.Listener.Addr()),
		ClientPort: be16(e.Client.Port()), ListenPort: be16(e.Listener.Port()),
		Channel: e.Channel,
	}
}

// c2pVal and p2cVal are the two directions' values: slot is the egress
// slot, userBase the user's bucket pair (0: no per-user cap).
func (e Entry) c2pVal(slot, userBase uint32) turnfwdFwdVal {
	return turnfwdFwdVal{Slot: slot, Bucket: e.bucket(0), UserBucket: userBucket(userBase, 0),
		SrcIp: addr16(e.Relay.Addr()), DstIp: addr16(e.Peer.Addr()),
		SrcPort: be16(e.Relay.Port()), DstPort: be16(e.Peer.Port()),
		Mark: e.Mark,
	}
}

func (e Entry) p2cKey() turnfwdP2cKey {
	return turnfwdP2cKey{
		PeerIp: addr16(e.Peer.Addr()), RelayIp: addr16(e.Relay.Addr()),
		PeerPort: be16(e.Peer.Port()), RelayPort: be16(e.Relay.Port()),
	}
}

func (e Entry) p2cVal(slot, userBase uint32) turnfwdFwdVal {
	return turnfwdFwdVal{Slot: slot, Bucket: e.bucket(1), UserBucket: userBucket(userBase, 1),
		SrcIp: addr16(e.Listener.Addr()), DstIp: addr16(e.Client.Addr()),
		SrcPort: be16(e.Listener.Port()), DstPort: be16(e.Client.Port()),
		Channel: e.Channel, Mark: e.Mark,
	}
}

// bucket is the kernel bucket of e's direction dir, 0 without a cap.
func (e Entry) bucket(dir uint32) uint32 {
	if e.Bitrate == 0 {
		return 0
	}
	return bucketID(e.Relay, dir)
}
