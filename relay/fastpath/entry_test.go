package fastpath

import (
	"net/netip"
	"testing"
)

// TestEntryValid: the program rewrites addresses in place, so an entry
// is forwardable only with all four addresses of one family (IPv4-mapped
// IPv6 counting as IPv4) and a ChannelData channel number.
func TestEntryValid(t *testing.T) {
	v4, v6 := fuzzEntryOf("192.0.2.1", "198.51.100.1", "192.0.2.9"), fuzzEntryOf("2001:db8:1::1", "2001:db8:2::1", "2001:db8:3::9")
	mapped := fuzzEntryOf("::ffff:192.0.2.1", "198.51.100.1", "::ffff:192.0.2.9")
	cross := v6
	cross.Peer = v4.Peer // an IPv6 client and allocation... to an IPv4 peer
	crossClient := v4
	crossClient.Client = v6.Client // RFC 6156: an IPv6 client on an IPv4 allocation
	low, high := v4, v4
	low.Channel, high.Channel = 0x3fff, 0x8000
	for _, tc := range []struct {
		name string
		e    Entry
		want bool
	}{
		{"ipv4", v4, true},
		{"ipv6", v6, true},
		{"ipv4-mapped", mapped, true},
		{"ipv6 allocation, ipv4 peer", cross, false},
		{"ipv6 client, ipv4 allocation", crossClient, false},
		{"channel below 0x4000", low, false},
		{"channel above 0x7fff", high, false},
		{"zero", Entry{}, false},
	} {
		if got := tc.e.valid(); got != tc.want {
			t.Errorf("%s: valid() = %v, want %v", tc.name, got, tc.want)
		}
	}
	if bucketID(v4.Relay, 0) == bucketID(v6.Relay, 0) || bucketID(v4.Relay, 0) == bucketID(v4.Relay, 1) || bucketID(v4.Relay, 0) == 0 {
		t.Error("bucket ids of different families or directions collide, or are 0")
	}
}

func fuzzEntryOf(client, relay, peer string) Entry {
	return Entry{
		Client:   netip.AddrPortFrom(netip.MustParseAddr(client), 40000),
		Listener: netip.AddrPortFrom(netip.MustParseAddr(relay), 3478),
		Relay:    netip.AddrPortFrom(netip.MustParseAddr(relay), 50000),
		Peer:     netip.AddrPortFrom(netip.MustParseAddr(peer), 6000),
		Channel:  0x4001,
	}
}
