package gateway

import (
	"net/netip"

	"github.com/mediaedge/mediaedge/internal/steer"
)

// sock is one UDP socket of the data path. Every sock has exactly one
// owner, the worker whose epoll set holds it: only that worker reads from
// it, writes to it and changes its fields. A dedicated sock belongs to
// one leg of one session (owner); a shared sock serves many legs and
// tells them apart with its demux table.
type sock struct {
	// set when created, never changed
	fd    int
	local netip.AddrPort
	v6    bool
	// rtcpOnly: a dedicated or shared socket for RTCP without rtcp-mux;
	// every datagram on it is RTCP.
	rtcpOnly bool
	leg      legID

	// owner is the leg of a dedicated socket; nil for a shared one.
	owner *leg
	// dm is the demux table of a shared socket; nil for a dedicated one.
	dm *demux
	// target: one of the worker's steering targets (steering_linux.go),
	// which receives the datagrams of its dedicated sockets.
	target bool
	// steerBy is the steerer that steers this dedicated socket's
	// datagrams to its worker, nil when none does; steerNext chains the
	// worker's sockets on the same port. Owned by the worker.
	steerBy   *steer.Steerer
	steerNext *sock
	// port is the allocation to release when the socket closes (0: none);
	// pair: port+1 was reserved with it (for the RTCP socket).
	port uint16
	pair bool
}

// flowKey identifies a flow on a shared socket: who sends, and which
// stream.
type flowKey struct {
	src  netip.AddrPort
	ssrc uint32
}

// demux maps flows on a shared socket to legs. Owned by the socket's
// worker.
type demux struct {
	flows map[flowKey]*leg
	// bySrc maps a source address to a leg that owns one of its flows:
	// a new flow from that address is tried against that leg first.
	bySrc map[netip.AddrPort]*leg
	// legs are the legs using this socket, the candidates of trial
	// authentication for a flow seen for the first time.
	legs []*leg
	idx  map[*leg]int
	// rot is where the next trial pass over legs starts: passes cut
	// short by a budget still cover every leg in turn.
	rot int
	// sources budgets and denies the senders of unknown flows (trial.go).
	sources srcTable
}

func newDemux() *demux {
	return &demux{flows: map[flowKey]*leg{}, bySrc: map[netip.AddrPort]*leg{}, idx: map[*leg]int{},
		sources: newSrcTable()}
}

// add makes l a candidate on the socket.
func (d *demux) add(l *leg) {
	if _, ok := d.idx[l]; ok {
		return
	}
	d.idx[l] = len(d.legs)
	d.legs = append(d.legs, l)
}

// learn records that flow f on this socket is l's.
func (d *demux) learn(l *leg, f flowKey) {
	d.flows[f] = l
	d.bySrc[f.src] = l
	l.flows = append(l.flows, f)
}

// remove forgets l and every flow it learned on this socket.
func (d *demux) remove(l *leg) {
	i, ok := d.idx[l]
	if !ok {
		return
	}
	delete(d.idx, l)
	last := len(d.legs) - 1
	if i != last {
		d.legs[i] = d.legs[last]
		d.idx[d.legs[i]] = i
	}
	d.legs[last] = nil
	d.legs = d.legs[:last]
	for _, f := range l.flows {
		if d.flows[f] == l {
			delete(d.flows, f)
		}
		if d.bySrc[f.src] == l {
			delete(d.bySrc, f.src)
		}
	}
}
