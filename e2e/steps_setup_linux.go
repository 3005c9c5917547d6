package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/mediaedge/mediaedge/bench"
)

// stepTopology builds the namespaces, starts the echo services and records
// the routing state before mediaedge runs.
func (s *scenario) stepTopology(ctx context.Context) error {
	k := newChecker("topology: client, edge, VPN concentrator and internet namespaces")
	defer func() { s.record(k.done()) }()
	topo, err := BuildTopology(ctx, s.opt.Prefix, s.opt.EdgeSysctl)
	if err != nil {
		k.fail(err)
		return err
	}
	s.topo = topo
	k.note("namespaces %s, %s, %s, %s (veth links; the edge masquerades on %s)",
		topo.Client.Name, topo.Edge.Name, topo.Concentrator.Name, topo.Internet.Name, ifEdgeWAN)
	if s.opt.EdgeSysctl != "" {
		k.note("edge sysctls from %s (as installed)", s.opt.EdgeSysctl)
		for _, l := range topo.SysctlNotes {
			k.note("  %s", l)
		}
	}
	for _, e := range []struct {
		ns   *Netns
		addr netip.Addr
	}{
		{topo.Internet, CloudMediaAddr}, {topo.Internet, CloudWebAddr}, {topo.Internet, NewMediaAddr},
		{topo.Concentrator, CorpHostAddr},
	} {
		ap := netip.AddrPortFrom(e.addr, EchoPort)
		echo, err := StartEcho(e.ns, ap.String())
		if err != nil {
			k.fail(err)
			return err
		}
		s.echoes[ap] = echo
	}
	// Before mediaedge, the full tunnel takes everything: the cloud media
	// server sees the client as the concentrator.
	dev, err := routeVia(ctx, topo.Edge, CloudMediaAddr, CloudSRTPPort)
	if err != nil {
		k.fail(err)
		return err
	}
	got, err := Probe(topo.Client, netip.AddrPortFrom(CloudMediaAddr, EchoPort), 10)
	if err != nil {
		k.fail(err)
		return err
	}
	src := s.echoes[netip.AddrPortFrom(CloudMediaAddr, EchoPort)].Sources()
	k.expect(dev == ifEdgeVPN && got == 10 && src[ConcentratorPublicAddr] == 10,
		"without mediaedge, client -> %s goes via %s: 10 probes, %d echoed, the server saw them from %s",
		CloudMediaAddr, dev, got, sources(src))
	if s.baseline, err = routingSnapshot(ctx, topo.Edge); err != nil {
		k.fail(err)
		return err
	}
	k.note("edge routing before mediaedge recorded: %d lines of ip rule / ip route show table all", len(s.baseline))
	if !k.c.Pass {
		return fmt.Errorf("e2e: the topology does not route as designed")
	}
	return nil
}

// stepDaemon starts `mediaedge run` on the edge and checks that the policy
// took effect.
func (s *scenario) stepDaemon(ctx context.Context) error {
	k := newChecker("mediaedge run: relay, gateway and policy running on the edge")
	defer func() { s.record(k.done()) }()
	edge, err := StartEdge(ctx, s.topo.Edge, s.opt.Bin, s.dir)
	if edge != nil {
		s.edge = edge
	}
	if err != nil {
		k.fail(err)
		return err
	}
	k.note("%s run --config %s (pid %d)", s.opt.Bin, edge.ConfigPath, edge.cmd.Process.Pid)
	st, err := edge.Status(ctx)
	if err != nil {
		k.fail(err)
		return err
	}
	var states []string
	for _, name := range []string{"policy", "gateway", "relay"} {
		states = append(states, name+"="+st.Components[name].State)
	}
	k.note("GET /v1/status: %s", strings.Join(states, " "))
	// The policy applies asynchronously after start-up: wait for it.
	var rules string
	mark := fmt.Sprintf("fwmark %#x", Mark)
	ok := waitFor(ctx, 5*time.Second, func() bool {
		out, err := s.topo.Edge.IP(ctx, "-4", "rule", "show")
		rules = out
		has, _ := tableHas(ctx, s.topo.Edge, "100", netip.MustParsePrefix("52.112.0.0/14"))
		return err == nil && strings.Contains(out, mark) && has
	})
	var ours []string
	for _, l := range strings.Split(rules, "\n") {
		if strings.Contains(l, "lookup 10") || strings.Contains(l, mark) {
			ours = append(ours, strings.TrimSpace(l))
		}
	}
	k.expect(ok, "ip rule: %s", strings.Join(ours, " | "))
	dev, err := routeVia(ctx, s.topo.Edge, CloudMediaAddr, CloudSRTPPort)
	k.expect(err == nil && dev == ifEdgeWAN, "ip route get %s from the client: dev %s (table 100 holds the teams preset)", CloudMediaAddr, dev)
	if !k.c.Pass {
		return fmt.Errorf("e2e: the policy did not install its rules; log:\n%s", edge.LogTail(30))
	}
	return nil
}

// stepTURN allocates on the relay from the client and starts an SRTP audio
// call with the cloud media server through the allocation.
func (s *scenario) stepTURN(ctx context.Context) error {
	k := newChecker("TURN: the client allocates on mediaedge's relay and exchanges audio with the cloud media server through it")
	defer func() { s.record(k.done()) }()
	tc, err := DialTURN(ctx, s.topo.Client, turnServerAddr(), s.edge.TURNUser, s.edge.TURNPassword, "mediaedge.test")
	if err != nil {
		k.fail(err)
		return err
	}
	s.turn = tc
	relayed := addrPortOf(tc.Relay.LocalAddr())
	k.expect(relayed.Addr() == EdgeWANAddr, "allocation from %s: relayed address %s (relay_ip, the uplink address)", ClientAddr, relayed)
	cloud, err := s.topo.Internet.ListenUDP(netip.AddrPortFrom(CloudMediaAddr, CloudTURNPeerPort).String())
	if err != nil {
		k.fail(err)
		return err
	}
	s.turnUp = newFlow("client -> cloud via TURN", 0x7a1e0001, 1000, 440, true)
	s.turnDown = newFlow("cloud -> client via TURN", 0x7a1e0002, 2000, 554, false)
	cloudPeer, err := StartPeer(PeerConfig{Name: "cloud media server (TURN)", Conn: cloud,
		SendKey: s.keys.eDown, RecvKey: s.keys.eUp, Out: s.turnDown, In: s.turnUp})
	if err != nil {
		cloud.Close()
		k.fail(err)
		return err
	}
	s.peers = append(s.peers, cloudPeer)
	clientPeer, err := StartPeer(PeerConfig{Name: "client (TURN)", Conn: tc.Relay,
		Dst:     &net.UDPAddr{IP: CloudMediaAddr.AsSlice(), Port: CloudTURNPeerPort},
		SendKey: s.keys.eUp, RecvKey: s.keys.eDown, Out: s.turnUp, In: s.turnDown})
	if err != nil {
		k.fail(err)
		return err
	}
	s.peers = append(s.peers, clientPeer)
	ok := waitFor(ctx, 5*time.Second, func() bool {
		_, up := s.turnUp.Totals()
		_, down := s.turnDown.Totals()
		return up > 0 && down > 0
	})
	sentUp, gotUp := s.turnUp.Totals()
	sentDown, gotDown := s.turnDown.Totals()
	k.expect(ok, "SRTP audio through the allocation: client -> %s %d/%d frames, back %d/%d",
		netip.AddrPortFrom(CloudMediaAddr, CloudTURNPeerPort), gotUp, sentUp, gotDown, sentDown)
	if !ok {
		return fmt.Errorf("e2e: no audio through the TURN relay; log:\n%s", s.edge.LogTail(30))
	}
	return nil
}

// stepDirect starts an SRTP call the client sends straight to the cloud
// media server, as a soft client does when split tunnelling lets it: the
// edge forwards it by the media prefix and masquerades it on the uplink.
func (s *scenario) stepDirect(ctx context.Context) error {
	k := newChecker("direct media: the client's own call to the cloud media server is forwarded and masqueraded on the uplink")
	defer func() { s.record(k.done()) }()
	clientConn, err := s.topo.Client.ListenUDP(netip.AddrPortFrom(ClientAddr, ClientDirectPort).String())
	if err != nil {
		k.fail(err)
		return err
	}
	cloudConn, err := s.topo.Internet.ListenUDP(netip.AddrPortFrom(CloudMediaAddr, CloudDirectPort).String())
	if err != nil {
		clientConn.Close()
		k.fail(err)
		return err
	}
	s.directUp = newFlow("client -> cloud direct", 0xd1ec0001, 5000, 852, true)
	s.directDown = newFlow("cloud -> client direct", 0xd1ec0002, 6000, 1336, false)
	cloudPeer, err := StartPeer(PeerConfig{Name: "cloud media server (direct)", Conn: cloudConn, Relatch: true,
		SendKey: s.keys.dDown, RecvKey: s.keys.dUp, Out: s.directDown, In: s.directUp})
	if err != nil {
		clientConn.Close()
		cloudConn.Close()
		k.fail(err)
		return err
	}
	s.peers = append(s.peers, cloudPeer)
	clientPeer, err := StartPeer(PeerConfig{Name: "client (direct)", Conn: clientConn,
		Dst:     net.UDPAddrFromAddrPort(netip.AddrPortFrom(CloudMediaAddr, CloudDirectPort)),
		SendKey: s.keys.dUp, RecvKey: s.keys.dDown, Out: s.directUp, In: s.directDown})
	if err != nil {
		clientConn.Close()
		k.fail(err)
		return err
	}
	s.peers = append(s.peers, clientPeer)
	ok := waitFor(ctx, 5*time.Second, func() bool {
		_, up := s.directUp.Totals()
		_, down := s.directDown.Totals()
		return up > 0 && down > 0
	})
	sentUp, gotUp := s.directUp.Totals()
	sentDown, gotDown := s.directDown.Totals()
	w := s.directUp.Window(time.Time{}, time.Now())
	k.expect(ok && len(w.Sources) == 1 && w.Sources[EdgeWANAddr] > 0,
		"client %s -> %s: %d/%d frames, seen from %s (the uplink address: masqueraded on %s); back %d/%d",
		netip.AddrPortFrom(ClientAddr, ClientDirectPort), netip.AddrPortFrom(CloudMediaAddr, CloudDirectPort),
		gotUp, sentUp, sources(w.Sources), ifEdgeWAN, gotDown, sentDown)
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
		s.keys.gInt, err = bench.ParseCryptoLine(resp.Internal.Crypto)
	}
	if err == nil {
		s.keys.gCloud, err = bench.ParseCryptoLine(resp.Cloud.Crypto)
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

	s.gwUp = newFlow("client -> cloud via the gateway", 0x5e550001, 3000, 697, true)
	s.gwDown = newFlow("cloud -> client via the gateway", 0x5e550002, 4000, 1209, false)
	clientPeer, err := StartPeer(PeerConfig{Name: "client (gateway)", Conn: clientConn,
		Dst:     net.UDPAddrFromAddrPort(s.gwInternal),
		SendKey: s.keys.kInt, RecvKey: s.keys.gInt,
		Forbidden: []bench.Key{s.keys.kCloud, s.keys.gCloud},
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
		Forbidden: []bench.Key{s.keys.kInt, s.keys.gInt},
		Out:       s.gwDown, In: s.gwUp})
	if err != nil {
		cloudConn.Close()
		k.fail(err)
		return err
	}
	s.peers = append(s.peers, cloudPeer)
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
func sameKey(a, b bench.Key) bool {
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
