package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/mediaedge/mediaedge/internal/config"
	metest "github.com/mediaedge/mediaedge/internal/testutil"
)

// bypassForms are the peer addresses a relay must refuse by default: every
// non-global range and every IPv6 form that carries a refused IPv4 address.
var bypassForms = []struct {
	name, addr, reason string
}{
	{"ipv4 loopback", "127.0.0.1", reasonLoopback},
	{"ipv4 loopback other", "127.255.255.254", reasonLoopback},
	{"this network", "0.0.0.0", reasonUnspecified},
	{"this network host", "0.1.2.3", reasonUnspecified},
	{"rfc1918 10", "10.1.2.3", reasonPrivate},
	{"rfc1918 172.16", "172.16.0.1", reasonPrivate},
	{"rfc1918 192.168", "192.168.1.1", reasonPrivate},
	{"cgnat", "100.64.0.1", reasonSharedCGNAT},
	{"link-local", "169.254.1.1", reasonLinkLocal},
	{"cloud metadata", "169.254.169.254", reasonLinkLocal},
	{"multicast", "224.0.0.1", reasonMulticast},
	{"broadcast", "255.255.255.255", reasonReserved},
	{"class e", "240.0.0.1", reasonReserved},
	{"test-net-1", "192.0.2.1", reasonDocumentation},
	{"test-net-2", "198.51.100.1", reasonDocumentation},
	{"test-net-3", "203.0.113.1", reasonDocumentation},
	{"benchmarking", "198.18.0.1", reasonBenchmarking},
	{"ietf protocol", "192.0.0.8", reasonProtocol},
	{"ipv6 unspecified", "::", reasonUnspecified},
	{"ipv6 loopback", "::1", reasonLoopback},
	{"ipv6 link-local", "fe80::1", reasonLinkLocal},
	{"ipv6 ula", "fd00::1", reasonUniqueLocal},
	{"ipv6 ula fc", "fc00::1", reasonUniqueLocal},
	{"ipv6 multicast", "ff02::1", reasonMulticast},
	{"ipv6 documentation", "2001:db8::1", reasonDocumentation},
	{"ipv6 documentation 3fff", "3fff::1", reasonDocumentation},
	{"ipv6 benchmarking", "2001:2::1", reasonBenchmarking},
	{"ipv6 discard", "100::1", reasonReserved},
	{"ipv4-mapped loopback", "::ffff:127.0.0.1", reasonLoopback},
	{"ipv4-mapped metadata", "::ffff:169.254.169.254", reasonLinkLocal},
	{"ipv4-mapped private", "::ffff:10.0.0.1", reasonPrivate},
	{"ipv4-compatible loopback", "::127.0.0.1", reasonLoopback},
	{"ipv4-compatible private", "::10.0.0.1", reasonPrivate},
	{"siit loopback", "::ffff:0:127.0.0.1", reasonLoopback},
	{"nat64 loopback", "64:ff9b::127.0.0.1", reasonLoopback},
	{"nat64 metadata", "64:ff9b::a9fe:a9fe", reasonLinkLocal},
	{"nat64 private", "64:ff9b::192.168.0.1", reasonPrivate},
	{"local nat64", "64:ff9b:1::1", reasonProtocol},
	{"6to4 loopback", "2002:7f00:1::1", reasonLoopback},
	{"6to4 private", "2002:c0a8:101::1", reasonPrivate},
	{"6to4 metadata", "2002:a9fe:a9fe::", reasonLinkLocal},
	{"teredo server loopback", "2001:0:7f00:1::1", reasonLoopback},
	// Teredo client 10.0.0.1 is stored as its complement f5ff:fffe.
	{"teredo client private", "2001:0:808:808:0:0:f5ff:fffe", reasonPrivate},
}

func testPolicy(allowed, denied []string) *peerPolicy {
	var a, d []netip.Prefix
	for _, s := range allowed {
		a = append(a, netip.MustParsePrefix(s))
	}
	for _, s := range denied {
		d = append(d, netip.MustParsePrefix(s))
	}
	return newPeerPolicy(a, d, nil, []netip.Addr{netip.MustParseAddr("198.51.100.7")})
}

func TestPolicyRefusesBypassForms(t *testing.T) {
	p := testPolicy(nil, nil)
	for _, tc := range bypassForms {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Peer(netip.MustParseAddr(tc.addr)); got != tc.reason {
				t.Errorf("Peer(%s) = %q, want %q", tc.addr, got, tc.reason)
			}
		})
	}
}

func TestPolicyPrecedence(t *testing.T) {
	for _, tc := range []struct {
		name            string
		allowed, denied []string
		addr, want      string
	}{
		{"global unicast allowed", nil, nil, "8.8.8.8", ""},
		{"global ipv6 allowed", nil, nil, "2606:4700::1111", ""},
		{"nat64 of global allowed", nil, nil, "64:ff9b::808:808", ""},
		{"6to4 of global allowed", nil, nil, "2002:808:808::1", ""},
		{"own address refused", nil, nil, "198.51.100.7", reasonDocumentation},
		{"allowed opens private", []string{"10.0.0.0/8"}, nil, "10.1.2.3", ""},
		{"allowed opens mapped form too", []string{"10.0.0.0/8"}, nil, "::ffff:10.1.2.3", ""},
		{"allowed v4 opens nat64 form", []string{"127.0.0.0/8"}, nil, "64:ff9b::7f00:1", ""},
		{"denied wins over allowed", []string{"10.0.0.0/8"}, []string{"10.9.0.0/16"}, "10.9.1.1", reasonDeniedPeers},
		{"denied global", nil, []string{"8.8.8.0/24"}, "8.8.8.8", reasonDeniedPeers},
		{"denied reaches nat64 form", nil, []string{"8.8.8.0/24"}, "64:ff9b::808:808", reasonDeniedPeers},
		{"allowed v6 form does not open embedded", []string{"64:ff9b::/96"}, nil, "64:ff9b::7f00:1", reasonLoopback},
		{"allowed metadata stays denied by denied", []string{"169.254.0.0/16"}, []string{"169.254.169.254/32"}, "169.254.169.254", reasonDeniedPeers},
		{"mapped prefix in config", []string{"::ffff:10.0.0.0/104"}, nil, "10.0.0.5", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPolicy(tc.allowed, tc.denied)
			if got := p.Peer(netip.MustParseAddr(tc.addr)); got != tc.want {
				t.Errorf("Peer(%s) = %q, want %q", tc.addr, got, tc.want)
			}
		})
	}
}

func TestPolicyOwnAddress(t *testing.T) {
	p := newPeerPolicy(nil, nil, nil, []netip.Addr{netip.MustParseAddr("8.8.4.4")})
	if got := p.Peer(netip.MustParseAddr("8.8.4.4")); got != reasonOwnAddress {
		t.Errorf("own address: got %q", got)
	}
	if got := p.Peer(netip.MustParseAddr("64:ff9b::808:404")); got != reasonOwnAddress {
		t.Errorf("own address via nat64: got %q", got)
	}
}

func TestPolicyClients(t *testing.T) {
	p := newPeerPolicy(nil, nil, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, nil)
	if !p.Client(netip.MustParseAddr("10.1.1.1")) || !p.Client(netip.MustParseAddr("::ffff:10.1.1.1")) {
		t.Error("client in allowed_clients refused")
	}
	if p.Client(netip.MustParseAddr("192.0.2.1")) {
		t.Error("client outside allowed_clients admitted")
	}
}

func FuzzPolicyPeer(f *testing.F) {
	for _, tc := range bypassForms {
		a := netip.MustParseAddr(tc.addr).As16()
		f.Add(a[:])
	}
	f.Add([]byte{8, 8, 8, 8})
	p := testPolicy([]string{"10.0.0.0/8"}, []string{"10.9.0.0/16"})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, ok := netip.AddrFromSlice(b)
		r := p.PeerIP(net.IP(b))
		if !ok {
			if r != reasonInvalid {
				t.Fatalf("invalid address judged %q", r)
			}
			return
		}
		// The mapped and unmapped forms of an address are judged alike.
		if a.Is4() {
			m := netip.AddrFrom16(a.As16())
			if r2 := p.Peer(m); r2 != r {
				t.Fatalf("%s judged %q but %s judged %q", a, r, m, r2)
			}
		}
	})
}

// TestPeerPolicyThroughRelay refuses every bypass form with 403 through a
// real CreatePermission and ChannelBind, and lets allowed exceptions pass.
func TestPeerPolicyThroughRelay(t *testing.T) {
	cfg := baseConfig(t)
	cfg.AllowedPeers = []config.Prefix{{Prefix: netip.MustParsePrefix("192.0.2.128/25")}}
	cfg.DeniedPeers = []config.Prefix{{Prefix: netip.MustParsePrefix("8.8.8.0/24")}}
	cfg.RelayIPv6 = "::1"
	cfg.Listeners = append(cfg.Listeners, ListenerConfig{Transport: "udp", Addr: config.AddrPort{AddrPort: netip.MustParseAddrPort("[::1]:0")}})
	r := startRelay(t, cfg)
	udp6 := r.UDPAddrs()[1]

	clients := map[bool]*clientAlloc{}
	get := func(v6 bool) *clientAlloc {
		if c := clients[v6]; c != nil {
			return c
		}
		srv := r.udp
		if v6 {
			srv = udp6
		}
		c := udpClient(t, srv, testUser, testPass)
		rc, err := c.Allocate()
		if err != nil {
			t.Fatalf("allocate (ipv6=%v): %v", v6, err)
		}
		t.Cleanup(func() { rc.Close() })
		clients[v6] = &clientAlloc{c: c, server: srv}
		return clients[v6]
	}
	ch := uint16(0x4000)
	check := func(t *testing.T, addr string, want int) {
		a := netip.MustParseAddr(addr)
		ca := get(!a.Unmap().Is4())
		peer := xorPeer{addr: a, port: 9}
		m := authedRequest(t, ca.c, ca.server, testUser, testPass, stun.MethodCreatePermission, peer)
		if got := errorCode(m); got != want {
			t.Errorf("CreatePermission %s: error %d, want %d", addr, got, want)
		}
		ch++
		m = authedRequest(t, ca.c, ca.server, testUser, testPass, stun.MethodChannelBind,
			channelNumber(ch), peer)
		if got := errorCode(m); got != want {
			t.Errorf("ChannelBind %s: error %d, want %d", addr, got, want)
		}
	}
	for _, tc := range bypassForms {
		t.Run(tc.name, func(t *testing.T) { check(t, tc.addr, 403) })
	}
	for _, tc := range []struct{ name, addr string }{
		{"allowed documentation range", "192.0.2.200"},
		{"allowed documentation range nat64 form", "64:ff9b::c000:2c8"},
		{"global", "9.9.9.9"},
	} {
		t.Run("allowed "+tc.name, func(t *testing.T) { check(t, tc.addr, 0) })
	}
	t.Run("denied_peers", func(t *testing.T) { check(t, "8.8.8.8", 403) })
	if got := r.metric(t, "mediaedge_relay_peers_denied_total", "reason", reasonLoopback); got < 2 {
		t.Errorf("peers denied (loopback) = %v, want >= 2", got)
	}
}

type clientAlloc struct {
	c      *turn.Client
	server netip.AddrPort
}

// xorPeer encodes XOR-PEER-ADDRESS with the family of the literal: an
// IPv4-mapped address goes on the wire as IPv6 (family 2), as a hostile
// client would send it.
type xorPeer struct {
	addr netip.Addr
	port uint16
}

func (x xorPeer) AddTo(m *stun.Message) error {
	var v []byte
	if x.addr.Is4() {
		v = make([]byte, 8)
		v[1] = 1
		a := x.addr.As4()
		copy(v[4:], a[:])
	} else {
		v = make([]byte, 20)
		v[1] = 2
		a := x.addr.As16()
		copy(v[4:], a[:])
	}
	binary.BigEndian.PutUint16(v[2:4], x.port^uint16(magicCookie>>16))
	var key [16]byte
	binary.BigEndian.PutUint32(key[0:4], magicCookie)
	copy(key[4:], m.TransactionID[:])
	for i := 4; i < len(v); i++ {
		v[i] ^= key[i-4]
	}
	m.Add(stun.AttrXORPeerAddress, v)
	return nil
}

type channelNumber uint16

func (c channelNumber) AddTo(m *stun.Message) error {
	m.Add(stun.AttrChannelNumber, []byte{byte(c >> 8), byte(c), 0, 0})
	return nil
}

const magicCookie = 0x2112A442

// TestPeerRefusalReasonAndLog: a refused peer gets a 403 whose reason
// phrase says why (pion would send it bare), signed with the user's key,
// for CreatePermission (also when only one of its peers is refused) and
// ChannelBind; the log line names the configuration key that would admit
// it.
func TestPeerRefusalReasonAndLog(t *testing.T) {
	cfg := baseConfig(t)
	cfg.DeniedPeers = []config.Prefix{{Prefix: netip.MustParsePrefix("8.8.8.0/24")}}
	r := startRelay(t, cfg)
	c := udpClient(t, r.udp, testUser, testPass)
	rc, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	integrity := stun.NewLongTermIntegrity(testUser, cfg.Realm, testPass)
	ch := uint16(0x4100)
	for _, tc := range []struct {
		name   string
		method stun.Method
		peers  []string
		reason string
		phrase string
		key    string
	}{
		{"permission private", stun.MethodCreatePermission, []string{"10.1.2.3"}, reasonPrivate,
			"Forbidden: peer address denied by policy (private)", "key=relay.allowed_peers"},
		{"permission one of two", stun.MethodCreatePermission, []string{"9.9.9.9", "169.254.169.254"}, reasonLinkLocal,
			"Forbidden: peer address denied by policy (link_local)", "key=relay.allowed_peers"},
		{"permission denied_peers", stun.MethodCreatePermission, []string{"8.8.8.8"}, reasonDeniedPeers,
			"Forbidden: peer address listed in relay.denied_peers", "key=relay.denied_peers"},
		{"channel bind", stun.MethodChannelBind, []string{"10.9.9.9"}, reasonPrivate,
			"Forbidden: peer address denied by policy (private)", "key=relay.allowed_peers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var attrs []stun.Setter
			for _, p := range tc.peers {
				attrs = append(attrs, xorPeer{addr: netip.MustParseAddr(p), port: 9})
			}
			if tc.method == stun.MethodChannelBind {
				ch++
				attrs = append(attrs, channelNumber(ch))
			}
			m := authedRequest(t, c, r.udp, testUser, testPass, tc.method, attrs...)
			var ec stun.ErrorCodeAttribute
			if err := ec.GetFrom(m); err != nil || ec.Code != 403 || string(ec.Reason) != tc.phrase {
				t.Fatalf("answer %v %d %q, want 403 %q", err, ec.Code, ec.Reason, tc.phrase)
			}
			if err := integrity.Check(m); err != nil {
				t.Errorf("the 403 is not signed with the user's key: %v", err)
			}
			want := "reason=" + tc.reason
			metest.WaitFor(t, "the refusal's log line", 5*time.Second, func() bool {
				for _, l := range strings.Split(r.logs.String(), "\n") {
					if strings.Contains(l, "peer refused by policy") && strings.Contains(l, want) && strings.Contains(l, tc.key) {
						return true
					}
				}
				return false
			})
		})
	}
}
