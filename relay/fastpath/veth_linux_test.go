package fastpath

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"go.uber.org/goleak"
)

// TestForwarderAcrossVeth forwards both ways between a client and a peer
// in two other namespaces, over veth, for IPv4 and IPv6, with transmit
// checksum offload on everywhere (CHECKSUM_PARTIAL end to end), off on
// the relay's links (skb_checksum_help fills the checksum in at the
// relay's egress, from csum_start), and off everywhere (the senders'
// checksums arrive complete and the program's incremental update must be
// right). The receiving kernels verify every checksum they can (a bad one
// is dropped and counted in InCsumErrors); the test compares what every
// receiver got with what was sent, byte for byte, and where the
// datagrams on the wire carry a complete checksum, tshark checks each.
// Last, the peer is a socket on the relay's own host.
func TestForwarderAcrossVeth(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fastpath: kernel test needs root (netns, veth, CAP_BPF)")
	}
	_, errDump := exec.LookPath("tcpdump")
	_, errShark := exec.LookPath("tshark")
	wire := errDump == nil && errShark == nil
	if !wire {
		t.Log("tcpdump or tshark missing: checksums checked by the receiving kernels only")
	}
	defer goleak.VerifyNone(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	lab := newLab(t)
	lab.in(lab.relay)
	fw, err := New()
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer fw.Close()
	for _, name := range append([]string{"lo"}, lab.relayLinks...) {
		if err := fw.Attach(lab.ifindex(name)); err != nil {
			t.Fatalf("Attach %s: %v", name, err)
		}
	}
	for _, mode := range []struct {
		name string
		off  []string // links with tx checksum offload off
		// wire: the datagrams on the receivers' links carry complete
		// checksums (not CHECKSUM_PARTIAL), so a capture can check them.
		wire bool
	}{
		{"offload on", nil, false},
		{"offload off at the relay", lab.relayLinks, true},
		{"offload off", lab.allLinks, true},
		{"peer on the relay host", nil, false},
	} {
		for _, link := range lab.allLinks {
			lab.setTxCsum(link, !contains(mode.off, link))
		}
		for fam, famName := range []string{"ipv4", "ipv6"} {
			t.Run(mode.name+"/"+famName, func(t *testing.T) {
				outer := lab.t
				lab.t = t
				defer func() { lab.t = outer }()
				if mode.name == "peer on the relay host" {
					// The datagram to the peer goes through loopback's
					// egress (a local source is a martian on r0), the
					// reply comes in on lo.
					lab.roundTripsTo(t, fw, fam, false, lab.relay, lab.relayIP[fam])
					return
				}
				lab.roundTrips(t, fw, fam, mode.wire && wire)
			})
		}
	}
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// roundTrips sends ChannelData from four clients over four channels to
// four echo peers and checks every reply.
// It returns how many datagrams went each way.
func (l *lab) roundTrips(t *testing.T, fw *Forwarder, fam int, wire bool) uint64 {
	return l.roundTripsTo(t, fw, fam, wire, l.peer, l.peerIP[fam])
}

// roundTripsTo is roundTrips with the echo peers on peerIP in namespace
// peerNS.
func (l *lab) roundTripsTo(t *testing.T, fw *Forwarder, fam int, wire bool, peerNS netns.NsHandle, peerIP netip.Addr) uint64 {
	const legs, rounds = 4, 40
	network := [2]string{"udp4", "udp6"}[fam]
	open := func(ns netns.NsHandle, a netip.Addr) *net.UDPConn {
		l.in(ns)
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
		if err != nil {
			t.Fatalf("listen on %s: %v", a, err)
		}
		return c
	}
	var (
		conns   []*net.UDPConn
		dones   []chan struct{}
		clients [legs]*net.UDPConn
		entries [legs]Entry
		peers   [legs]*countingConn
	)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		for _, d := range dones {
			<-d
		}
	}()
	// The relay's own sockets only see what the kernel does not forward.
	listener := open(l.relay, l.listenIP[fam])
	conns = append(conns, listener)
	for i := range legs {
		clients[i] = open(l.client, l.clientIP[fam])
		relay := open(l.relay, l.relayIP[fam])
		pc := open(peerNS, peerIP)
		conns = append(conns, clients[i], relay, pc)
		peers[i] = &countingConn{conn: pc}
		done := make(chan struct{})
		dones = append(dones, done)
		go peers[i].echo(done)
		entries[i] = Entry{
			Client: addrPort(clients[i]), Listener: addrPort(listener),
			Relay: addrPort(relay), Peer: addrPort(pc),
			Channel: uint16(0x4000 + i), Mark: 0x42,
		}
		if err := fw.Add(entries[i]); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	defer func() {
		for _, e := range entries {
			if _, err := fw.Remove(e); err != nil {
				t.Errorf("Remove: %v", err)
			}
		}
	}()
	var stops [2]func(int) string
	if wire {
		stops = [2]func(int) string{l.capture("p0"), l.capture("c0")}
	}
	l.in(l.client)
	clientErrs := udpCsumErrors(t)
	l.in(peerNS)
	peerErrs := udpCsumErrors(t)

	buf := make([]byte, 2048)
	var sent, sentBytes uint64
	for r := range rounds {
		for i, c := range clients {
			// 1 to 1400 bytes: every padding length, odd and even
			// tails; odd rounds pad with non-zero bytes.
			payload := make([]byte, 1+(r*97+i*13)%1400)
			for k := range payload {
				payload[k] = byte(r*11 + i*5 + k)
			}
			msg := channelDataPad(entries[i].Channel, payload, byte(r%2)*0xa5)
			if _, err := c.WriteToUDPAddrPort(msg, entries[i].Listener); err != nil {
				t.Fatalf("send: %v", err)
			}
			sent++
			sentBytes += uint64(len(payload))
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				cs, _ := fw.Counters(entries[i])
				t.Fatalf("leg %d round %d (%d bytes): no reply: %v (kernel counters %+v, peer got %d)",
					i, r, len(payload), err, cs, peers[i].packets.Load())
			}
			want := channelData(entries[i].Channel, payload)[:4+len(payload)]
			if from != entries[i].Listener || !bytes.Equal(buf[:n], want) {
				t.Fatalf("leg %d round %d: got %d bytes from %v, want %d from %v", i, r, n, from, len(want), entries[i].Listener)
			}
		}
	}
	var got Counters
	var peerGot uint64
	for i, e := range entries {
		c, err := fw.Counters(e)
		if err != nil {
			t.Fatal(err)
		}
		got.ToPeerPackets += c.ToPeerPackets
		got.ToPeerBytes += c.ToPeerBytes
		got.ToClientPackets += c.ToClientPackets
		got.ToClientBytes += c.ToClientBytes
		peerGot += peers[i].packets.Load()
	}
	if got != (Counters{ToPeerPackets: sent, ToPeerBytes: sentBytes, ToClientPackets: sent, ToClientBytes: sentBytes}) || peerGot != sent {
		t.Errorf("kernel counters %+v, peers got %d; want %d datagrams and %d bytes each way", got, peerGot, sent, sentBytes)
	}
	_ = listener.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := listener.ReadFromUDPAddrPort(buf); !isTimeout(err) {
		t.Errorf("the relay's listener got a datagram although every channel was in the kernel (%v)", err)
	}
	l.in(l.client)
	if n := udpCsumErrors(t) - clientErrs; n != 0 {
		t.Errorf("the client's kernel counted %d UDP checksum errors", n)
	}
	l.in(peerNS)
	if n := udpCsumErrors(t) - peerErrs; n != 0 {
		t.Errorf("the peer's kernel counted %d UDP checksum errors", n)
	}
	if !wire {
		return sent
	}
	for i, name := range []string{"p0", "c0"} {
		st := checksumStatus(t, stops[i](int(sent)))
		if st["1"] != int(sent) || len(st) != 1 {
			t.Errorf("tshark on %s: checksum verdicts %v, want %d good (\"1\") and nothing else", name, st, sent)
		}
	}
	return sent
}
