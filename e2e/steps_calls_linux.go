package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/pion/turn/v5"

	"github.com/mediaedge/mediaedge/bench/srtpcheck"
)

// startCall starts an SRTP audio call: the client side sends up with kUp
// to dst and receives down with kDown; the cloud side the reverse, sending
// wherever the client's packets come from (relatch: following every
// change, as symmetric RTP behind NAT does).
func (s *scenario) startCall(clientConn, cloudConn net.PacketConn, dst net.Addr, up, down *Flow, kUp, kDown srtpcheck.Key, relatch bool) error {
	cloud, err := StartPeer(PeerConfig{Name: up.Name + " (cloud side)", Conn: cloudConn, Relatch: relatch,
		SendKey: kDown, RecvKey: kUp, Out: down, In: up})
	if err != nil {
		clientConn.Close()
		cloudConn.Close()
		return err
	}
	s.peers = append(s.peers, cloud)
	client, err := StartPeer(PeerConfig{Name: up.Name + " (client side)", Conn: clientConn, Dst: dst,
		SendKey: kUp, RecvKey: kDown, Out: up, In: down})
	if err != nil {
		clientConn.Close()
		return err
	}
	s.peers = append(s.peers, client)
	return nil
}

// waitFlowing waits until every flow has had an intact arrival.
func waitFlowing(ctx context.Context, flows ...*Flow) bool {
	return waitFor(ctx, 5*time.Second, func() bool {
		for _, f := range flows {
			if _, got := f.Totals(); got == 0 {
				return false
			}
		}
		return true
	})
}

// callNote describes a call's two flows so far.
func callNote(up, down *Flow) string {
	sentUp, gotUp := up.Totals()
	sentDown, gotDown := down.Totals()
	w := up.Window(time.Time{}, time.Now())
	return fmt.Sprintf("%d/%d frames up, seen from %s; %d/%d back", gotUp, sentUp, sources(w.Sources), gotDown, sentDown)
}

// stepTURN allocates on the relay from the client, an IPv4 and an IPv6
// allocation (RFC 6156, requested over the IPv4 listener), and starts an
// SRTP audio call with the cloud media server through each.
func (s *scenario) stepTURN(ctx context.Context) error {
	k := newChecker("TURN: the client allocates on mediaedge's relay (IPv4 and IPv6) and exchanges audio with the cloud media server through it")
	defer func() { s.record(k.done()) }()
	s.turnUp = newFlow("client -> cloud via TURN", 0x7a1e0001, 1000, 440, EdgeWANAddr)
	s.turnDown = newFlow("cloud -> client via TURN", 0x7a1e0002, 2000, 554, netip.Addr{})
	s.turn6Up = newFlow("client -> cloud via TURN, IPv6", 0x7a1e6001, 7000, 941, EdgeWANAddr6)
	s.turn6Down = newFlow("cloud -> client via TURN, IPv6", 0x7a1e6002, 8000, 1477, netip.Addr{})
	for _, c := range []struct {
		peer     netip.Addr
		family   turn.RequestedAddressFamily
		up, down *Flow
		kUp      srtpcheck.Key
		kDown    srtpcheck.Key
	}{
		{CloudMediaAddr, turn.RequestedAddressFamilyIPv4, s.turnUp, s.turnDown, s.keys.eUp, s.keys.eDown},
		{CloudMediaAddr6, turn.RequestedAddressFamilyIPv6, s.turn6Up, s.turn6Down, s.keys.e6Up, s.keys.e6Down},
	} {
		tc, err := DialTURN(ctx, s.topo.Client, turnServerAddr(), s.edge.TURNUser, s.edge.TURNPassword, "mediaedge.test", c.family)
		if err != nil {
			k.fail(err)
			return err
		}
		s.turns = append(s.turns, tc)
		relayed := addrPortOf(tc.Relay.LocalAddr())
		k.expect(relayed.Addr() == uplinkAddr(c.peer), "allocation from %s: relayed address %s (the uplink address)", ClientAddr, relayed)
		peer := netip.AddrPortFrom(c.peer, CloudTURNPeerPort)
		cloud, err := s.topo.Internet.ListenUDP(peer.String())
		if err != nil {
			k.fail(err)
			return err
		}
		if err := s.startCall(tc.Relay, cloud, net.UDPAddrFromAddrPort(peer), c.up, c.down, c.kUp, c.kDown, false); err != nil {
			k.fail(err)
			return err
		}
	}
	ok := waitFlowing(ctx, s.turnUp, s.turnDown, s.turn6Up, s.turn6Down)
	k.expect(ok, "SRTP audio through the IPv4 allocation to %s: %s", netip.AddrPortFrom(CloudMediaAddr, CloudTURNPeerPort), callNote(s.turnUp, s.turnDown))
	k.expect(ok, "SRTP audio through the IPv6 allocation to %s: %s", netip.AddrPortFrom(CloudMediaAddr6, CloudTURNPeerPort), callNote(s.turn6Up, s.turn6Down))
	if !ok {
		return fmt.Errorf("e2e: no audio through the TURN relay; log:\n%s", s.edge.LogTail(30))
	}
	return nil
}

// stepDirect starts SRTP calls the client sends straight to the cloud
// media server, IPv4 and IPv6, as a soft client does when split tunnelling
// lets it: the edge forwards them by the media prefixes and masquerades
// them on the uplink.
func (s *scenario) stepDirect(ctx context.Context) error {
	k := newChecker("direct media: the client's own calls to the cloud media server (IPv4 and IPv6) are forwarded and masqueraded on the uplink")
	defer func() { s.record(k.done()) }()
	s.directUp = newFlow("client -> cloud direct", 0xd1ec0001, 5000, 852, EdgeWANAddr)
	s.directDown = newFlow("cloud -> client direct", 0xd1ec0002, 6000, 1336, netip.Addr{})
	s.direct6Up = newFlow("client -> cloud direct, IPv6", 0xd1ec6001, 9000, 770, EdgeWANAddr6)
	s.direct6Down = newFlow("cloud -> client direct, IPv6", 0xd1ec6002, 10000, 1633, netip.Addr{})
	for _, c := range []struct {
		from, to netip.AddrPort
		up, down *Flow
		kUp      srtpcheck.Key
		kDown    srtpcheck.Key
	}{
		{netip.AddrPortFrom(ClientAddr, ClientDirectPort), netip.AddrPortFrom(CloudMediaAddr, CloudDirectPort),
			s.directUp, s.directDown, s.keys.dUp, s.keys.dDown},
		{netip.AddrPortFrom(ClientAddr6, ClientDirectPort6), netip.AddrPortFrom(CloudMediaAddr6, CloudDirectPort),
			s.direct6Up, s.direct6Down, s.keys.d6Up, s.keys.d6Down},
	} {
		clientConn, err := s.topo.Client.ListenUDP(c.from.String())
		if err != nil {
			k.fail(err)
			return err
		}
		cloudConn, err := s.topo.Internet.ListenUDP(c.to.String())
		if err != nil {
			clientConn.Close()
			k.fail(err)
			return err
		}
		if err := s.startCall(clientConn, cloudConn, net.UDPAddrFromAddrPort(c.to), c.up, c.down, c.kUp, c.kDown, true); err != nil {
			k.fail(err)
			return err
		}
	}
	ok := waitFlowing(ctx, s.directUp, s.directDown, s.direct6Up, s.direct6Down)
	for _, c := range []struct {
		up, down *Flow
		to       netip.AddrPort
	}{
		{s.directUp, s.directDown, netip.AddrPortFrom(CloudMediaAddr, CloudDirectPort)},
		{s.direct6Up, s.direct6Down, netip.AddrPortFrom(CloudMediaAddr6, CloudDirectPort)},
	} {
		w := c.up.Window(time.Time{}, time.Now())
		k.expect(ok && len(w.Sources) == 1 && w.Sources[c.up.Uplink] > 0,
			"client -> %s: %s (the uplink address: masqueraded on %s)", c.to, callNote(c.up, c.down), ifEdgeWAN)
	}
	return nil
}

// createResponse is the part of the gateway's answer to POST /v1/sessions
// the scenario uses.
type createResponse struct {
	ID       string      `json:"id"`
	Internal legResponse `json:"internal"`
	Cloud    legResponse `json:"cloud"`
}

type legResponse struct {
	Local     string `json:"local"`
	Remote    string `json:"remote"`
	Crypto    string `json:"crypto"`
	Suite     string `json:"suite"`
	PeerSuite string `json:"peer_suite"`
}

// stepGateway creates a session on the gateway and starts an SRTP audio
// call client <-> gateway <-> cloud media server.
func (s *scenario) stepGateway(ctx context.Context) error {
	k := newChecker("gateway: a session made over the control API re-keys SRTP between the client and the cloud media server")
	defer func() { s.record(k.done()) }()
	clientConn, err := s.topo.Client.ListenUDP(netip.AddrPortFrom(ClientAddr, ClientSRTPPort).String())
	if err != nil {
		k.fail(err)
		return err
	}
	cloudConn, err := s.topo.Internet.ListenUDP(netip.AddrPortFrom(CloudMediaAddr, CloudSRTPPort).String())
	if err != nil {
		clientConn.Close()
		k.fail(err)
		return err
	}
	req := map[string]any{
		"id": "e2e-call",
		"internal": map[string]any{"remote": netip.AddrPortFrom(ClientAddr, ClientSRTPPort).String(),
			"rtcp_mux": true, "crypto": s.keys.kInt.CryptoLine()},
		"cloud": map[string]any{"remote": netip.AddrPortFrom(CloudMediaAddr, CloudSRTPPort).String(),
			"rtcp_mux": true, "crypto": s.keys.kCloud.CryptoLine()},
	}
	var resp createResponse
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = s.edge.Control.Do(cctx, "POST", "/v1/sessions", req, &resp)
	cancel()
	if err == nil {
		s.sessionID = resp.ID
		s.gwInternal, err = netip.ParseAddrPort(resp.Internal.Local)
	}
	if err == nil {
		s.gwCloud, err = netip.ParseAddrPort(resp.Cloud.Local)
	}
	if err == nil {
		s.keys.gInt, err = srtpcheck.ParseCryptoLine(resp.Internal.Crypto)
	}
	if err == nil {
		s.keys.gCloud, err = srtpcheck.ParseCryptoLine(resp.Cloud.Crypto)
	}
	if err != nil {
		clientConn.Close()
		cloudConn.Close()
		k.fail(fmt.Errorf("POST /v1/sessions: %w", err))
		return err
	}
	k.note("POST /v1/sessions -> session %q: internal leg %s (%s), cloud leg %s (%s)",
		resp.ID, s.gwInternal, resp.Internal.Suite, s.gwCloud, resp.Cloud.Suite)
	k.expect(s.gwCloud.Addr() == EdgeWANAddr && s.gwInternal.Addr() == EdgeLANAddr,
		"the internal leg listens on the LAN address, the cloud leg on the uplink address")
	k.expect(!sameKey(s.keys.gCloud, s.keys.kInt) && !sameKey(s.keys.gCloud, s.keys.gInt),
		"the gateway's cloud key differs from both keys of the internal leg (keys compared, never shown)")

	s.gwUp = newFlow("client -> cloud via the gateway", 0x5e550001, 3000, 697, EdgeWANAddr)
	s.gwDown = newFlow("cloud -> client via the gateway", 0x5e550002, 4000, 1209, netip.Addr{})
	clientPeer, err := StartPeer(PeerConfig{Name: "client (gateway)", Conn: clientConn,
		Dst:     net.UDPAddrFromAddrPort(s.gwInternal),
		SendKey: s.keys.kInt, RecvKey: s.keys.gInt,
		Forbidden: []srtpcheck.Key{s.keys.kCloud, s.keys.gCloud},
		Out:       s.gwUp, In: s.gwDown})
	if err != nil {
		clientConn.Close()
		cloudConn.Close()
		k.fail(err)
		return err
	}
	s.peers = append(s.peers, clientPeer)
	cloudPeer, err := StartPeer(PeerConfig{Name: "cloud media server (gateway)", Conn: cloudConn,
		Dst:     net.UDPAddrFromAddrPort(s.gwCloud),
		SendKey: s.keys.kCloud, RecvKey: s.keys.gCloud,
		Forbidden: []srtpcheck.Key{s.keys.kInt, s.keys.gInt},
		Out:       s.gwDown, In: s.gwUp})
	if err != nil {
		cloudConn.Close()
		k.fail(err)
		return err
	}
	s.peers = append(s.peers, cloudPeer)
	s.gwCloudPeer = cloudPeer
	ok := waitFor(ctx, 5*time.Second, func() bool {
		_, up := s.gwUp.Totals()
		_, down := s.gwDown.Totals()
		return up > 0 && down > 0
	})
	sentUp, gotUp := s.gwUp.Totals()
	sentDown, gotDown := s.gwDown.Totals()
	k.expect(ok, "client (key K_int) -> gateway -> cloud (decrypts with the gateway's cloud key): %d/%d frames; cloud (K_cloud) -> client (gateway's internal key): %d/%d",
		gotUp, sentUp, gotDown, sentDown)
	if !ok {
		return fmt.Errorf("e2e: no audio through the gateway; log:\n%s", s.edge.LogTail(30))
	}
	return nil
}

// sameKey compares two keys' bytes.
func sameKey(a, b srtpcheck.Key) bool {
	return string(a.Master) == string(b.Master)
}

// sources formats a count by source address, sorted by address.
func sources(m map[netip.Addr]int) string {
	if len(m) == 0 {
		return "nowhere"
	}
	var parts []string
	for _, a := range sortedAddrs(m) {
		parts = append(parts, a.String()+" x"+strconv.Itoa(m[a]))
	}
	return strings.Join(parts, ", ")
}
