package gateway

import (
	"net/netip"
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
	// legs are the legs using this socket, the candidates of trial
	// authentication for a flow seen for the first time.
	legs []*leg
	idx  map[*leg]int
	// trial tokens: every key tried on a packet of an unknown flow costs
	// one token; tokens refill at trialRate per second up to trialBurst,
	// so a flood of unknown flows costs bounded CPU (500k checks of a
	// small packet take about a quarter of a core-second).
	tokens   float64
	refillAt int64
}

const (
	trialRate  = 500_000
	trialBurst = 500_000
	// maxTrialCandidates bounds the keys tried for one packet.
	maxTrialCandidates = 16384
)

func newDemux() *demux {
	return &demux{flows: map[flowKey]*leg{}, idx: map[*leg]int{}, tokens: trialBurst}
}

// refill adds the tokens earned since the last refill.
func (d *demux) refill(now int64) {
	if d.refillAt != 0 {
		d.tokens += float64(now-d.refillAt) * trialRate / 1e9
		if d.tokens > trialBurst {
			d.tokens = trialBurst
		}
	}
	d.refillAt = now
}

// take spends one trial token.
func (d *demux) take() bool {
	if d.tokens < 1 {
		return false
	}
	d.tokens--
	return true
}

// add makes l a candidate on the socket.
func (d *demux) add(l *leg) {
	if _, ok := d.idx[l]; ok {
		return
	}
	d.idx[l] = len(d.legs)
	d.legs = append(d.legs, l)
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
	}
}
