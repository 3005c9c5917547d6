package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"time"
)

func sortedAddrs(m map[netip.Addr]int) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

func (s *scenario) flows() []*Flow {
	return []*Flow{s.turnUp, s.turnDown, s.turn6Up, s.turn6Down, s.gwUp, s.gwDown,
		s.directUp, s.directDown, s.direct6Up, s.direct6Down}
}

func (s *scenario) pause(v bool) {
	for _, p := range s.peers {
		p.Pause(v)
	}
}

// stepMediaWindow measures MediaWindow of audio with the edge's interface
// counters and captures on lan0 and wan0, and decides three checks: the
// path, the keys seen on the uplink, and the audio.
func (s *scenario) stepMediaWindow(ctx context.Context) error {
	path := newChecker("the relayed, the re-keyed and the client's direct media leave the edge on the direct uplink")
	keys := newChecker("the cloud side receives only SRTP under cloud-side keys, never the internal key, across an API re-key (bench verify on captures)")
	audio := newChecker("audio payloads arrive intact in all ten directions")
	defer func() {
		s.record(path.done())
		s.record(keys.done())
		s.record(audio.done())
	}()
	edge := s.topo.Edge
	// As an admin would: the gateway's own ports on each side for bench
	// verify, and everything on the uplink.
	caps := []struct {
		iface, filter, file string
		c                   *Capture
	}{
		{ifEdgeLAN, fmt.Sprintf("udp port %d", s.gwInternal.Port()), "lan0-gateway.pcap", nil},
		{ifEdgeWAN, fmt.Sprintf("udp port %d", s.gwCloud.Port()), "wan0-gateway.pcap", nil},
		{ifEdgeWAN, "udp", "wan0-all.pcap", nil},
	}
	stopCaps := func() error {
		var errs []error
		for i := range caps {
			if caps[i].c != nil {
				errs = append(errs, caps[i].c.Stop())
			}
		}
		return errors.Join(errs...)
	}

	// Quiet the senders so that the captures see whole exchanges.
	s.pause(true)
	if err := sleep(ctx, inFlight); err != nil {
		return err
	}
	for i := range caps {
		c, err := StartCapture(ctx, edge, caps[i].iface, caps[i].filter, filepath.Join(s.dir, caps[i].file))
		if err != nil {
			_ = stopCaps()
			s.pause(false)
			// Nothing was measured: none of the three may pass.
			for _, k := range []*checker{path, keys, audio} {
				k.fail(err)
			}
			return nil
		}
		caps[i].c = c
	}
	c0, err0 := readCounters(ctx, edge, ifEdgeWAN, ifEdgeVPN)
	gso0, errG0 := s.gsoMerged(ctx)
	s.pause(false)
	t0 := time.Now()
	werr := sleep(ctx, s.opt.MediaWindow/2)
	var rk rekeyOutcome
	if werr == nil {
		// Half way: a new key for the cloud leg through the API, as
		// the signalling of a long call would ask for.
		rk = s.rekeyCloud(ctx)
		werr = sleep(ctx, s.opt.MediaWindow-time.Since(t0))
	}
	if werr == nil && rk.err == nil {
		// The gateway encrypts with the new key from its switch delay
		// on; on a busy machine the senders fall behind and the window
		// can end before a frame used it. Keep the media running until
		// the cloud server decrypted one with it (a generous bound).
		waitFor(ctx, quietLimit, func() bool {
			_, ok := s.gwCloudPeer.SwitchedAt()
			return ok
		})
	}
	s.pause(true)
	t1 := time.Now()
	end := t1.Add(inFlight)
	_ = sleep(ctx, inFlight)
	// Quiet: every frame sent in the window has arrived, or a generous
	// bound has passed. On a busy machine a frame can sit in a queue for
	// longer than inFlight; counting then would call it lost.
	w := map[*Flow]Window{}
	waitFor(ctx, quietLimit, func() bool {
		all := true
		for _, f := range s.flows() {
			w[f] = f.Window(t0, end)
			all = all && w[f].Received == w[f].Sent
		}
		return all
	})
	var up, down, gotDown int
	for _, f := range s.flows() {
		if f.ToCloud {
			up += w[f].Sent
		} else {
			down += w[f].Sent
			gotDown += w[f].Received
		}
	}
	// The gateway and the relay send a run of packets to one destination
	// as one UDP GSO message, which veth carries and counts as one packet:
	// when packets queue (a busy machine), wan0's tx counter is lower
	// than the datagrams that left by the segments they merged.
	gso1, errG1 := s.gsoMerged(ctx)
	merged := uint64(max(gso1-gso0, 0))
	// The uplink's counters, read once they account for every frame sent
	// in the window (or after a generous bound): interface counters only
	// grow, and a frame in flight when they are read is not in them yet.
	c1, err1 := countersWhen(ctx, edge, quietLimit, func(c map[string]LinkCounters) bool {
		if c0 == nil {
			return true
		}
		wan := c[ifEdgeWAN].Sub(c0[ifEdgeWAN])
		return wan.TxPackets+merged >= uint64(up) && wan.RxPackets >= uint64(gotDown)
	}, ifEdgeWAN, ifEdgeVPN)
	errCap := stopCaps()
	s.pause(false)
	if werr != nil {
		return werr
	}
	if err := errors.Join(err0, err1, errG0, errG1); err != nil {
		path.fail(err)
	}

	// Path: interface counters and the source the cloud server saw.
	if c0 != nil && c1 != nil {
		wan, vpn := c1[ifEdgeWAN].Sub(c0[ifEdgeWAN]), c1[ifEdgeVPN].Sub(c0[ifEdgeVPN])
		path.note("in %s: %d audio packets towards the cloud (relayed %d + %d over IPv6, re-keyed %d, direct %d + %d over IPv6), %d back",
			s.opt.MediaWindow, up, w[s.turnUp].Sent, w[s.turn6Up].Sent, w[s.gwUp].Sent, w[s.directUp].Sent, w[s.direct6Up].Sent, down)
		path.expect(up > 0 && wan.TxPackets+merged >= uint64(up) && wan.RxPackets >= uint64(gotDown),
			"%s (direct uplink): tx +%d packets (and up to %d more datagrams inside UDP GSO messages of the gateway and the relay), rx +%d", ifEdgeWAN, wan.TxPackets, merged, wan.RxPackets)
		path.expect(vpn.TxPackets <= 3 && vpn.RxPackets <= 3,
			"%s (VPN): tx +%d packets, rx +%d (at most 3 allowed: ARP, neighbour discovery)", ifEdgeVPN, vpn.TxPackets, vpn.RxPackets)
	}
	for _, f := range s.flows() {
		if !f.ToCloud {
			continue
		}
		src := w[f].Sources
		path.expect(len(src) == 1 && src[f.Uplink] > 0,
			"the cloud media server got %q from %s (uplink address %s, VPN address %s)", f.Name, sources(src), f.Uplink, vpnAddr(f.Uplink))
	}

	// Keys: bench's verifier on the gateway's packets of both captures,
	// then every datagram on the uplink against every key.
	s.noteRekey(keys, rk)
	if errCap != nil {
		keys.fail(errCap)
	} else {
		s.verifyCaptures(ctx, keys, caps[0].c.Path, caps[1].c.Path, caps[2].c.Path)
	}

	// Audio: every frame that arrived is the frame sent.
	for _, f := range s.flows() {
		sent, got := f.Totals()
		win := w[f]
		audio.expect(got > 0 && f.mismatch.Load() == 0 && f.foreign.Load() == 0 && f.authFail.Load() == 0 && win.Received == win.Sent,
			"%s (%.0f Hz tone, PCMU): %d frames sent, %d arrived byte-identical, %d altered, %d under a forbidden key, %d unauthenticated; in the window %d/%d",
			f.Name, f.Hz, sent, got, f.mismatch.Load(), f.foreign.Load(), f.authFail.Load(), win.Received, win.Sent)
	}
	return nil
}

// gsoMerged returns, from the metrics, at least how many datagrams
// mediaedge has sent inside UDP GSO messages beyond one per message: the
// packets an interface counter does not count. The gateway's are exact
// (segments - messages); the relay counts only segments, all of which are
// taken.
func (s *scenario) gsoMerged(ctx context.Context) (float64, error) {
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), MetricsPort).String()
	m, err := Scrape(ctx, s.topo.Edge.DialContext, addr)
	if err != nil {
		return 0, err
	}
	segs, _ := m.Sum("mediaedge_gateway_gso_segments_total")
	msgs, _ := m.Sum("mediaedge_gateway_gso_sends_total")
	relay, _ := m.Sum("mediaedge_relay_gso_datagrams_total")
	return segs - msgs + relay, nil
}

// waitRecovered waits until every flow has an intact arrival after t, the
// cloud-bound ones from the uplink address. It returns when the last one
// came back, or the flows that did not, each with the sources it had.
func (s *scenario) waitRecovered(ctx context.Context, t time.Time, timeout time.Duration) (time.Time, []string) {
	var last time.Time
	var missing []string
	waitFor(ctx, timeout, func() bool {
		last, missing = time.Time{}, nil
		for _, f := range s.flows() {
			var first time.Time
			if f.ToCloud {
				if a := f.ArrivalsFrom(f.Uplink, t); len(a) > 0 {
					first = a[0]
				}
			} else {
				first = f.Window(t, time.Now()).FirstArrival
			}
			if first.IsZero() {
				missing = append(missing, fmt.Sprintf("%s (arrived since: from %s)", f.Name, sources(f.Window(t, time.Now()).Sources)))
				continue
			}
			if first.After(last) {
				last = first
			}
		}
		return len(missing) == 0
	})
	return last, missing
}
