package relay

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"

	"github.com/pion/turn/v5"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// start does the work of Start; the caller cleans up on error.
func (s *Server) start(ctx context.Context) error {
	cfg := &s.cfg
	b4, a4, b6, a6 := cfg.relayAddrs()
	s.bind = [2]netip.Addr{b4, b6}
	s.adv = [2]netip.Addr{a4, a6}
	s.sock = sockOpts{mark: uint32(cfg.Mark), buffer: int(cfg.Sockets.RelayBuffer)}
	rangeLen := cfg.Ports.Len()
	s.slots = newSlotTable(2 * rangeLen)
	for f := 0; f < 2; f++ {
		if s.bind[f].IsValid() {
			s.udpPorts[f] = newPortPool(cfg.Ports.Min, cfg.Ports.Max)
			s.tcpPorts[f] = newPortPool(cfg.Ports.Min, cfg.Ports.Max)
		}
	}
	s.policy.Store(s.buildPolicy(cfg))
	if err := s.startFastPath(); err != nil {
		return err
	}

	shards := cfg.UDPShards
	if shards == 0 {
		shards = runtime.GOMAXPROCS(0)
	}
	lo := sockopt.Options{
		RecvBuffer: int(cfg.Sockets.ListenerBuffer),
		SendBuffer: int(cfg.Sockets.ListenerBuffer),
		ReusePort:  true,
		ReuseAddr:  true,
	}
	streamGen := &generator{s: s}
	var lcs []turn.ListenerConfig
	for _, l := range cfg.Listeners {
		switch l.Transport {
		case TransportUDP:
			if _, err := s.listenUDP(l.Addr.AddrPort, shards, lo); err != nil {
				return err
			}
		case TransportTCP, TransportTLS:
			tl, err := s.listenTCP(ctx, l, lo)
			if err != nil {
				return err
			}
			lcs = append(lcs, turn.ListenerConfig{
				Listener:              tl,
				RelayAddressGenerator: streamGen,
				PermissionHandler:     s.permit,
			})
		}
	}
	// One worker per shard: worker i reads shard i of every UDP listener
	// and the relay sockets of the allocations made through it.
	var pcs []turn.PacketConnConfig
	for i := 0; i < shards; i++ {
		w, err := newWorker(s, i, s.groups)
		if err != nil {
			return err
		}
		s.workers = append(s.workers, w)
		for _, g := range s.groups {
			pcs = append(pcs, turn.PacketConnConfig{
				PacketConn:            g.shards[i],
				RelayAddressGenerator: &generator{s: s, w: w},
				PermissionHandler:     s.permit,
			})
		}
	}
	s.wg.Add(1 + len(s.workers))
	for _, w := range s.workers {
		go func() {
			defer s.wg.Done()
			w.run()
		}()
	}
	go func() {
		defer s.wg.Done()
		s.housekeeping()
	}()

	lim := s.limits.Load()
	ts, err := turn.NewServer(turn.ServerConfig{
		PacketConnConfigs:  pcs,
		ListenerConfigs:    lcs,
		LoggerFactory:      newPionLogs(s.log),
		Realm:              cfg.Realm,
		AuthHandler:        s.auth.handle,
		QuotaHandler:       s.quota,
		EventHandler:       s.events(),
		AllocationLifetime: lim.Lifetime.D(),
		InboundMTU:         bufSize,
	})
	if err != nil {
		return fmt.Errorf("relay: starting pion/turn: %w", err)
	}
	s.turn = ts
	s.metrics.ioMode.WithLabelValues(s.ioMode()).Set(1)
	s.log.Info("TURN relay listening", "listeners", len(cfg.Listeners), "udp_shards", shards,
		"relay_ipv4", addrOrNone(s.adv[0]), "relay_ipv6", addrOrNone(s.adv[1]), "ports", cfg.Ports.String(),
		"mark", cfg.Mark.String(), "coalesce", cfg.Coalesce.String(), "io_mode", s.ioMode())
	return nil
}

// listenUDP binds shards SO_REUSEPORT sockets on addr.
func (s *Server) listenUDP(addr netip.AddrPort, shards int, lo sockopt.Options) (*udpGroup, error) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	g := &udpGroup{idx: len(s.groups), srv: s, v6: addr.Addr().Is6()}
	for i := 0; i < shards; i++ {
		bindAddr := addr
		if i > 0 {
			bindAddr = g.addr // the port the first shard got (port 0 in tests)
		}
		// One family per listener, like relay sockets: IPV6_V6ONLY.
		fd, err := udpbatch.Open(bindAddr, lo, false)
		if err != nil {
			g.close()
			return nil, fmt.Errorf("relay: listening on udp %s: %w", bindAddr, err)
		}
		if i == 0 {
			if g.addr, err = udpbatch.LocalAddr(fd); err != nil {
				unix.Close(fd)
				return nil, err
			}
			gr, _ := sockopt.ReadFD(fd)
			rcv, snd := gr.RecvBuffer, gr.SendBuffer
			s.metrics.buffers.WithLabelValues("listener", "recv").Set(float64(rcv))
			s.metrics.buffers.WithLabelValues("listener", "send").Set(float64(snd))
			if rcv < int(s.cfg.Sockets.ListenerBuffer) {
				s.log.Warn("listener socket buffer smaller than configured (no CAP_NET_ADMIN and net.core.rmem_max too low)",
					"configured", int64(s.cfg.Sockets.ListenerBuffer), "granted", rcv)
			}
		}
		sh := newUDPShard(g, fd)
		sh.local = net.UDPAddrFromAddrPort(g.addr)
		g.shards = append(g.shards, sh)
	}
	s.groups = append(s.groups, g)
	return g, nil
}

func (g *udpGroup) close() {
	for _, sh := range g.shards {
		sh.Close()
	}
}

// UDPAddrs returns the bound UDP listener addresses (for tests and tools
// that listen on port 0).
func (s *Server) UDPAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, g := range s.groups {
		out = append(out, g.addr)
	}
	return out
}

// TCPAddrs returns the bound TCP and TLS listener addresses.
func (s *Server) TCPAddrs() []netip.AddrPort {
	var out []netip.AddrPort
	for _, l := range s.tcpLns {
		out = append(out, l.addr)
	}
	return out
}

func addrOrNone(a netip.Addr) string {
	if !a.IsValid() {
		return "none"
	}
	return a.String()
}
