package e2e

import "net/netip"

// The scenario's addresses. Internal ranges are RFC 1918; the uplink and the
// concentrator's public side use documentation ranges; the cloud media
// server sits inside Microsoft Teams' published media prefix 52.112.0.0/14
// (endpoint set 11), which the policy's teams preset routes direct.
var (
	// ClientAddr is the internal client host on the branch LAN.
	ClientAddr = netip.MustParseAddr("10.20.0.10")
	// EdgeLANAddr is the edge on the LAN (lan0): the TURN listener, the
	// gateway's internal leg and the client's default gateway.
	EdgeLANAddr = netip.MustParseAddr("10.20.0.1")
	// EdgeVPNAddr and ConcentratorAddr are the ends of the tunnel (vpn0
	// on the edge) that carries the full-tunnel default route.
	EdgeVPNAddr      = netip.MustParseAddr("10.255.0.2")
	ConcentratorAddr = netip.MustParseAddr("10.255.0.1")
	// CorpHostAddr is a corporate host behind the concentrator.
	CorpHostAddr = netip.MustParseAddr("10.99.0.1")
	// ConcentratorPublicAddr is where the concentrator meets the internet:
	// what an internet host sees of traffic that went through the VPN.
	ConcentratorPublicAddr = netip.MustParseAddr("203.0.113.2")
	// InternetCorpSideAddr is the internet's end of the concentrator link.
	InternetCorpSideAddr = netip.MustParseAddr("203.0.113.1")
	// EdgeWANAddr is the edge's direct uplink (wan0) address: what an
	// internet host sees of traffic that went direct.
	EdgeWANAddr = netip.MustParseAddr("198.51.100.2")
	// WANGatewayAddr is the uplink's next hop (the ISP router).
	WANGatewayAddr = netip.MustParseAddr("198.51.100.1")
	// CloudMediaAddr is the cloud media server, inside 52.112.0.0/14.
	CloudMediaAddr = netip.MustParseAddr("52.112.0.10")
	// CloudWebAddr is another cloud host, in no media prefix: its
	// traffic must keep using the VPN.
	CloudWebAddr = netip.MustParseAddr("192.0.2.80")
	// NewMediaAddr is a cloud host inside NewMediaPrefix, a media range
	// published during the run and added to the configuration by a reload.
	NewMediaAddr   = netip.MustParseAddr("192.0.2.200")
	NewMediaPrefix = netip.MustParsePrefix("192.0.2.128/25")
)

// IPv6: the LAN, the tunnel and the corporate network use ULAs (which the
// policy's corporate_prefixes keep off the uplink), the uplink and the
// concentrator's public side documentation addresses, and the cloud media
// server sits in Teams' published 2603:1063::/38.
var (
	ClientAddr6             = netip.MustParseAddr("fd20::10")
	EdgeLANAddr6            = netip.MustParseAddr("fd20::1")
	EdgeVPNAddr6            = netip.MustParseAddr("fd55::2")
	ConcentratorAddr6       = netip.MustParseAddr("fd55::1")
	CorpHostAddr6           = netip.MustParseAddr("fd99::1")
	ConcentratorPublicAddr6 = netip.MustParseAddr("2001:db8:203::2")
	InternetCorpSideAddr6   = netip.MustParseAddr("2001:db8:203::1")
	EdgeWANAddr6            = netip.MustParseAddr("2001:db8:100::2")
	WANGatewayAddr6         = netip.MustParseAddr("2001:db8:100::1")
	CloudMediaAddr6         = netip.MustParseAddr("2603:1063::10")
	CloudWebAddr6           = netip.MustParseAddr("2001:db8:80::80")
)

// uplinkAddr and vpnAddr are what an internet host sees of traffic that
// went direct or through the VPN, in the family of a.
func uplinkAddr(a netip.Addr) netip.Addr {
	if a.Is6() {
		return EdgeWANAddr6
	}
	return EdgeWANAddr
}

func vpnAddr(a netip.Addr) netip.Addr {
	if a.Is6() {
		return ConcentratorPublicAddr6
	}
	return ConcentratorPublicAddr
}

// clientAddr is the client's address in the family of a.
func clientAddr(a netip.Addr) netip.Addr {
	if a.Is6() {
		return ClientAddr6
	}
	return ClientAddr
}

// Ports of the scenario's services.
const (
	// TURNPort is the relay's listener on EdgeLANAddr.
	TURNPort = 3478
	// CloudTURNPeerPort is the cloud media server's port for media relayed
	// by TURN; CloudSRTPPort its port for the gateway's cloud leg.
	CloudTURNPeerPort = 3479
	CloudSRTPPort     = 3480
	// ClientSRTPPort is the client's port for the gateway's internal leg.
	ClientSRTPPort = 5004
	// ClientDirectPort and CloudDirectPort carry the client's own call to
	// the cloud media server, forwarded by the edge without the relay or
	// the gateway.
	ClientDirectPort = 5006
	CloudDirectPort  = 3481
	// ClientDirectPort6 carries the client's direct IPv6 call.
	ClientDirectPort6 = 5008
	// EchoPort is the UDP echo service on the internet and corporate
	// hosts, used to see which way other traffic goes.
	EchoPort = 7
	// MetricsPort is the edge's metrics endpoint on 127.0.0.1.
	MetricsPort = 9477
)

// Mark is the fwmark of mediaedge's media sockets (relay.mark,
// gateway.cloud.mark, policy.mark): the value the docs recommend.
const Mark = 0x4d45

// Interface names inside the namespaces.
const (
	ifClientLAN   = "eth0" // client
	ifEdgeLAN     = "lan0" // edge, towards the client
	ifEdgeVPN     = "vpn0" // edge, the tunnel (full-tunnel default route)
	ifEdgeWAN     = "wan0" // edge, the direct uplink
	ifConcTunnel  = "tun0" // concentrator, its end of the tunnel
	ifConcInet    = "inet0"
	ifInetUplink  = "isp0"  // internet, the edge's ISP side
	ifInetCorpLnk = "corp0" // internet, the concentrator's side
)
