package load

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/mediaedge/mediaedge/bench/capture"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// recorded is one received datagram kept for --write-pcap.
type recorded struct {
	at       int64
	src, dst netip.AddrPort
	data     []byte
}

// receiver reads one socket until it is closed, decrypting and verifying
// every datagram. It owns the receive-side state of the streams that
// arrive on its socket.
type receiver struct {
	r     *srtpRun
	s     *benchSocket
	msgs  []udpbatch.Message
	plain []byte
	hdr   rtp.Header
	rtcpH rtcp.Header
	rec   []recorded
	arena []byte
	// first direction received here: unknown datagrams are counted on it
	dflt *direction
}

func newReceiver(r *srtpRun, s *benchSocket) *receiver {
	rc := &receiver{r: r, s: s, msgs: make([]udpbatch.Message, batchSize), plain: make([]byte, 0, 2048)}
	for i := range rc.msgs {
		rc.msgs[i].Buf = make([]byte, 2048)
	}
	for _, st := range s.bySSRC {
		if rc.dflt == nil || st.id < rc.dflt.streams[0].id {
			rc.dflt = st.dir
		}
	}
	return rc
}

func (rc *receiver) run() {
	for {
		n, err := rc.s.bc.ReadBatch(rc.msgs)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// ECONNREFUSED here is the ICMP port-unreachable of an
			// earlier send from this socket (Linux reports it on the
			// next call): not fatal for a receiver.
			time.Sleep(time.Millisecond)
			continue
		}
		now := rc.r.now()
		for i := 0; i < n; i++ {
			m := &rc.msgs[i]
			rc.handle(m.Buf[:m.N], m.Addr, now)
		}
	}
}

func (rc *receiver) handle(b []byte, from netip.AddrPort, now int64) {
	if rc.r.opt.WritePcap != nil {
		rc.keep(b, from, now)
	}
	if capture.LooksLikeRTCP(b) {
		rc.handleRTCP(b)
		return
	}
	if len(b) < 12 || b[0]>>6 != 2 {
		rc.unknown()
		return
	}
	st := rc.s.bySSRC[binary.BigEndian.Uint32(b[8:])]
	if st == nil {
		rc.unknown()
		return
	}
	rc.media(st, b, now, true)
}

// pendingMax bounds the packets a stream keeps that authenticated with no
// known key: around a re-key the new key can be in use before bench has
// it; they are retried once it arrives and count as failed otherwise. On
// a busy machine the control request that returns the key can take tens
// of milliseconds after the switch, a few hundred packets of a fast
// stream.
const pendingMax = 512

// settlePending retries, once the receivers have ended, the packets each
// stream still holds for want of a key: the stream can end before a
// packet under a re-key's new key triggers the switch, when the control
// request that returns the key outlasts it (a busy machine).
func (rc *receiver) settlePending() {
	for _, st := range rc.s.bySSRC {
		pend := st.pending
		st.pending = nil
		for _, p := range pend {
			rc.media(st, p.data, p.at, false)
		}
	}
}

type pendingPkt struct {
	at   int64
	data []byte
}

// media authenticates, decrypts and verifies one SRTP packet of st.
func (rc *receiver) media(st *stream, b []byte, now int64, mayPend bool) {
	// the index this sequence number extends to, closest to the highest
	// seen so far (RFC 3711 section 3.3.1 style)
	seq := binary.BigEndian.Uint16(b[2:])
	ext := int64(seq)
	if st.highestExt >= 0 {
		ext = st.highestExt + int64(int16(seq-uint16(st.highestExt)))
	}
	plain, err := st.rx.DecryptRTP(rc.plain[:0], b, &rc.hdr)
	if err != nil {
		var switched bool
		plain, switched, err = rc.otherKeys(st, b, ext)
		if err != nil {
			if mayPend && rc.r.opt.Rekey != nil && len(st.pending) < pendingMax {
				st.pending = append(st.pending, pendingPkt{at: now, data: append([]byte(nil), b...)})
			} else {
				st.failedAuth++
			}
			return
		}
		if switched && len(st.pending) > 0 {
			// Verify this packet first (plain is in rc.plain), then
			// retry what arrived before the key did.
			rc.accept(st, plain, ext, len(b), now)
			pend := st.pending
			st.pending = nil
			for _, p := range pend {
				rc.media(st, p.data, p.at, false)
			}
			return
		}
	}
	rc.accept(st, plain, ext, len(b), now)
}

// accept verifies a decrypted packet and records it.
func (rc *receiver) accept(st *stream, plain []byte, ext int64, size int, now int64) {
	rc.plain = plain[:0]
	h := &rc.hdr
	k := ext - int64(st.seq0)
	hl := h.MarshalSize()
	if k < 0 || k >= int64(st.n) || hl > len(plain) || !rc.payloadOK(st, int(k), plain[hl:]) {
		st.badPayload++
		return
	}
	st.highestExt = max(st.highestExt, ext)
	before := st.tracker.dup
	st.tracker.add(int(k))
	if st.tracker.dup != before {
		return
	}
	st.dir.received.Add(1)
	if sent := st.sendNs[k].Load(); sent > 0 && now >= sent {
		st.dir.lat.Record(time.Duration(now - sent))
		st.jitter.UpdateTransit(time.Duration(now - sent))
	}
	st.bytes += int64(size)
	st.lastRecv = max(st.lastRecv, now)
	st.dir.timeline.Add(time.Duration(now-rc.r.mediaStart.Load()), size)
}

func (rc *receiver) payloadOK(st *stream, k int, payload []byte) bool {
	h := &rc.hdr
	if st.replay != nil {
		p := &st.replay.Packets[k]
		return h.PayloadType == p.Header.PayloadType && h.Marker == p.Header.Marker &&
			h.Timestamp == p.Header.Timestamp && bytes.Equal(payload, p.Raw[p.HeaderLen:])
	}
	return h.PayloadType == rc.r.opt.PayloadType && h.Timestamp == st.ts0+uint32(k)*st.tsStep &&
		checkPayload(payload, st.id, uint32(k), rc.r.opt.PayloadBytes)
}

func (rc *receiver) handleRTCP(b []byte) {
	st := rc.s.bySSRC[binary.BigEndian.Uint32(b[4:])]
	if st == nil {
		rc.unknown()
		return
	}
	plain, err := st.rxRTCP.DecryptRTCP(rc.plain[:0], b, &rc.rtcpH)
	if err != nil {
		st.rtcpBad.Add(1)
		return
	}
	rc.plain = plain[:0]
	var sr rtcp.SenderReport
	if sr.Unmarshal(plain) != nil || sr.SSRC != st.ssrc || sr.NTPTime>>32 != rtcpMarker || sr.OctetCount >= uint32(rc.r.opt.RTCP) {
		st.rtcpBad.Add(1)
		return
	}
	st.rtcpOK.Add(1)
}

func (rc *receiver) unknown() {
	if rc.dflt != nil {
		rc.dflt.unknown.Add(1)
	}
}

// keep copies a datagram for the pcap into an arena that grows in 1 MiB
// chunks, not per packet.
func (rc *receiver) keep(b []byte, from netip.AddrPort, now int64) {
	if len(rc.arena)+len(b) > cap(rc.arena) {
		rc.arena = make([]byte, 0, max(1<<20, len(b)))
	}
	start := len(rc.arena)
	rc.arena = append(rc.arena, b...)
	rc.rec = append(rc.rec, recorded{at: now, src: from, dst: rc.s.addr, data: rc.arena[start:len(rc.arena):len(rc.arena)]})
}

// otherKeys tries the key the output is about to switch to (with the
// rollover counter of this packet's index carried over) and then the key
// it switched from, for packets still in flight. The switch costs an
// allocation, once per re-key, not per packet.
func (rc *receiver) otherKeys(st *stream, b []byte, ext int64) (plain []byte, switched bool, err error) {
	if next := st.nextRx.Load(); next != nil {
		ctx, err := next.Context()
		if err == nil {
			ctx.SetROC(st.ssrc, uint32(max(ext, 0)>>16))
			if p, err := ctx.DecryptRTP(rc.plain[:0], b, &rc.hdr); err == nil {
				st.prevRx, st.rx = st.rx, ctx
				st.nextRx.CompareAndSwap(next, nil)
				st.rekeys.Add(1)
				return p, true, nil
			}
		}
	}
	if st.prevRx != nil {
		p, err := st.prevRx.DecryptRTP(rc.plain[:0], b, &rc.hdr)
		return p, false, err
	}
	return nil, false, errNoKey
}
