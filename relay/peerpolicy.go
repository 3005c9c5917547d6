package relay

import (
	"net"
	"net/netip"
)

// Peer policy: which peer addresses the relay may send to.
//
// The relay refuses, unless the admin allows them, every address that is not
// globally routable unicast: a TURN relay that forwards to loopback, private
// ranges or a cloud metadata service is an SSRF proxy into the network it
// sits in (CVE-2020-26262 and its follow-ups). Addresses are canonicalised
// before they are judged: an IPv4-mapped IPv6 address is its IPv4 address,
// and the IPv6 forms that carry an IPv4 address (IPv4-compatible, SIIT,
// NAT64, 6to4, Teredo) are refused when the IPv4 address they carry is.

// Verdict reasons: the bounded label values of the peers-denied metric and
// the words of the log lines. They are stable; docs/relay.md lists them.
const (
	reasonNone          = ""
	reasonDeniedPeers   = "denied_peers"
	reasonUnspecified   = "unspecified"
	reasonLoopback      = "loopback"
	reasonPrivate       = "private"
	reasonSharedCGNAT   = "shared_address_space"
	reasonLinkLocal     = "link_local"
	reasonUniqueLocal   = "unique_local"
	reasonMulticast     = "multicast"
	reasonReserved      = "reserved"
	reasonDocumentation = "documentation"
	reasonBenchmarking  = "benchmarking"
	reasonProtocol      = "protocol_assignment"
	reasonOwnAddress    = "own_address"
	reasonInvalid       = "invalid"
	reasonFamily        = "family_mismatch"
)

// special is one special-purpose range and why it is refused.
type special struct {
	prefix netip.Prefix
	reason string
}

// specialRanges lists the special-purpose ranges (IANA IPv4 and IPv6
// Special-Purpose Address Registries) that are not globally reachable
// unicast. IPv4-mapped addresses never reach this table (they are unmapped
// first); the prefixes that embed an IPv4 address are in embeddings.
var specialRanges = func() []special {
	m := func(s, reason string) special { return special{netip.MustParsePrefix(s), reason} }
	return []special{
		// IPv4
		m("0.0.0.0/8", reasonUnspecified), // "this network", 0.0.0.0 included
		m("10.0.0.0/8", reasonPrivate),
		m("100.64.0.0/10", reasonSharedCGNAT),
		m("127.0.0.0/8", reasonLoopback),
		m("169.254.0.0/16", reasonLinkLocal), // includes 169.254.169.254, cloud metadata
		m("172.16.0.0/12", reasonPrivate),
		m("192.0.0.0/24", reasonProtocol), // includes 192.0.0.192/29 DS-Lite etc.
		m("192.0.2.0/24", reasonDocumentation),
		m("192.31.196.0/24", reasonProtocol), // AS112-v4
		m("192.52.193.0/24", reasonProtocol), // AMT
		m("192.88.99.0/24", reasonProtocol),  // deprecated 6to4 relay anycast
		m("192.168.0.0/16", reasonPrivate),
		m("192.175.48.0/24", reasonProtocol), // AS112 direct delegation
		m("198.18.0.0/15", reasonBenchmarking),
		m("198.51.100.0/24", reasonDocumentation),
		m("203.0.113.0/24", reasonDocumentation),
		m("224.0.0.0/4", reasonMulticast),
		m("240.0.0.0/4", reasonReserved), // includes 255.255.255.255, limited broadcast
		// IPv6
		m("::/128", reasonUnspecified),
		m("::1/128", reasonLoopback),
		m("64:ff9b:1::/48", reasonProtocol), // local-use NAT64 (RFC 8215)
		m("100::/64", reasonReserved),       // discard-only (RFC 6666)
		m("100:0:0:1::/64", reasonReserved), // dummy prefix (RFC 9780)
		m("2001:2::/48", reasonBenchmarking),
		m("2001:10::/28", reasonProtocol), // deprecated ORCHID
		m("2001:20::/28", reasonProtocol), // ORCHIDv2
		m("2001:db8::/32", reasonDocumentation),
		m("3fff::/20", reasonDocumentation), // RFC 9637
		m("5f00::/16", reasonProtocol),      // SRv6 SIDs (RFC 9602)
		m("fc00::/7", reasonUniqueLocal),
		m("fe80::/10", reasonLinkLocal),
		m("fec0::/10", reasonLinkLocal), // deprecated site-local
		m("ff00::/8", reasonMulticast),
	}
}()

// Prefixes of IPv6 forms that carry an IPv4 address.
var (
	prefixCompat     = netip.MustParsePrefix("::/96")           // IPv4-compatible (deprecated, RFC 4291)
	prefixSIIT       = netip.MustParsePrefix("::ffff:0:0:0/96") // IPv4-translated (RFC 2765)
	prefixNAT64      = netip.MustParsePrefix("64:ff9b::/96")    // well-known NAT64 (RFC 6052)
	prefixNAT64Local = netip.MustParsePrefix("64:ff9b:1::/48")  // local-use NAT64 (RFC 8215)
	prefix6to4       = netip.MustParsePrefix("2002::/16")       // 6to4 (RFC 3056)
	prefixTeredo     = netip.MustParsePrefix("2001::/32")       // Teredo (RFC 4380)
)

// embeddedIPv4 returns the IPv4 addresses that a canonical (unmapped) IPv6
// address carries, or none. Teredo carries two: its server and, obfuscated,
// its client.
func embeddedIPv4(a netip.Addr) (out [2]netip.Addr, n int) {
	if !a.Is6() {
		return out, 0
	}
	b := a.As16()
	v4 := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{b[i], b[i+1], b[i+2], b[i+3]}) }
	switch {
	case prefixCompat.Contains(a):
		// ::/96 except :: and ::1, which are the IPv6 unspecified and
		// loopback addresses (the special table judges them), not
		// IPv4-compatible forms of 0.0.0.0 and 0.0.0.1.
		if a != netip.IPv6Unspecified() && a != netip.IPv6Loopback() {
			out[0], n = v4(12), 1
		}
	case prefixSIIT.Contains(a), prefixNAT64.Contains(a):
		out[0], n = v4(12), 1
	case prefixNAT64Local.Contains(a):
		// RFC 6052 layout for a /48 prefix: the IPv4 address is split
		// around the "u" octet (bits 64-71).
		out[0], n = netip.AddrFrom4([4]byte{b[6], b[7], b[9], b[10]}), 1
	case prefix6to4.Contains(a):
		out[0], n = v4(2), 1
	case prefixTeredo.Contains(a):
		out[0] = v4(4)
		out[1] = netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]})
		n = 2
	}
	return out, n
}

// peerPolicy is an immutable snapshot of the peer and client rules. Build
// one with newPeerPolicy; the server swaps snapshots atomically on reload.
type peerPolicy struct {
	allowed []netip.Prefix
	denied  []netip.Prefix
	own     map[netip.Addr]struct{}
	// clients limits who may use the relay; empty admits everyone.
	clients []netip.Prefix
}

func newPeerPolicy(allowed, denied, clients []netip.Prefix, own []netip.Addr) *peerPolicy {
	p := &peerPolicy{
		allowed: canonicalPrefixes(allowed),
		denied:  canonicalPrefixes(denied),
		clients: canonicalPrefixes(clients),
		own:     make(map[netip.Addr]struct{}, len(own)),
	}
	for _, a := range own {
		if a.IsValid() {
			p.own[a.Unmap().WithZone("")] = struct{}{}
		}
	}
	return p
}

// canonicalPrefixes unmaps IPv4-mapped prefixes (::ffff:10.0.0.0/104 is
// 10.0.0.0/8) so that they match the unmapped addresses judged against them.
func canonicalPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		a := p.Addr()
		if a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out
}

func containsAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// judgeOne applies the rules to one canonical address: denied_peers first,
// then allowed_peers, then the built-in special ranges and the relay's own
// addresses. It returns the refusal reason or "".
func (p *peerPolicy) judgeOne(a netip.Addr) string {
	if containsAny(p.denied, a) {
		return reasonDeniedPeers
	}
	if containsAny(p.allowed, a) {
		return reasonNone
	}
	for _, s := range specialRanges {
		if s.prefix.Contains(a) {
			return s.reason
		}
	}
	if _, ok := p.own[a]; ok {
		return reasonOwnAddress
	}
	return reasonNone
}

// Peer judges a peer address and returns the reason it is refused, or ""
// when the relay may send to it. The address is canonicalised first (zone
// dropped, IPv4-mapped unmapped); an address that carries IPv4 addresses is
// refused when any of them is refused, whatever the rules say of the IPv6
// form itself.
func (p *peerPolicy) Peer(a netip.Addr) string {
	if !a.IsValid() {
		return reasonInvalid
	}
	a = a.Unmap().WithZone("")
	if r := p.judgeOne(a); r != reasonNone {
		return r
	}
	emb, n := embeddedIPv4(a)
	for i := 0; i < n; i++ {
		if r := p.judgeOne(emb[i]); r != reasonNone {
			return r
		}
	}
	return reasonNone
}

// PeerIP is Peer for a net.IP as pion passes it.
func (p *peerPolicy) PeerIP(ip net.IP) string {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return reasonInvalid
	}
	return p.Peer(a)
}

// Client reports whether a client at a may use the relay.
func (p *peerPolicy) Client(a netip.Addr) bool {
	if len(p.clients) == 0 {
		return true
	}
	return containsAny(p.clients, a.Unmap().WithZone(""))
}
