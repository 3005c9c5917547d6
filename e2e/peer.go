package e2e

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/mediaedge/mediaedge/bench/srtpcheck"
)

// frameInterval is the audio packet rate: one 20 ms frame, 50 packets/s.
const frameInterval = 20 * time.Millisecond

// maxFrames bounds every sender: ten minutes of audio, far beyond any run.
const maxFrames = 30000

// PeerConfig describes one endpoint of an SRTP audio call: it sends Out
// encrypted with SendKey and receives In, which must authenticate with
// RecvKey. Packets that authenticate with one of Forbidden are counted in
// In as foreign: a key that must never be seen at this end.
type PeerConfig struct {
	Name string
	Conn net.PacketConn
	// Dst is where the peer sends; nil: latched from the first
	// authenticated packet.
	Dst net.Addr
	// Relatch follows the source of every authenticated packet (symmetric
	// RTP behind NAT, whose mapping may change when the path does).
	Relatch   bool
	SendKey   srtpcheck.Key
	RecvKey   srtpcheck.Key
	Forbidden []srtpcheck.Key
	Out, In   *Flow
}

// Peer is a running PeerConfig: a sender goroutine (one SRTP context) and a
// receiver goroutine (another). Close closes the socket, which ends both,
// and waits for them.
type Peer struct {
	// set in StartPeer, never changed
	cfg    PeerConfig
	wg     sync.WaitGroup
	stop   chan struct{}
	closed sync.Once

	dst    atomic.Pointer[net.Addr]
	paused atomic.Bool
	// next is a key announced by signalling (a re-key) that the receiver
	// switches to when a packet authenticates with it.
	next atomic.Pointer[srtpcheck.Key]
	// switchedAt is the frame index of the first packet received under
	// the last announced key, +1; 0 until then.
	switchedAt atomic.Uint32
}

// StartPeer starts the peer's goroutines. The contexts are made here so
// that a bad key fails at once.
func StartPeer(cfg PeerConfig) (*Peer, error) {
	sendCtx, err := cfg.SendKey.Context()
	if err != nil {
		return nil, err
	}
	recvCtx, err := cfg.RecvKey.Context()
	if err != nil {
		return nil, err
	}
	p := &Peer{cfg: cfg, stop: make(chan struct{})}
	if cfg.Dst != nil {
		d := cfg.Dst
		p.dst.Store(&d)
	}
	p.wg.Add(2)
	go p.sendLoop(sendCtx)
	go p.recvLoop(recvCtx)
	return p, nil
}

// SetDst changes where the peer sends.
func (p *Peer) SetDst(a net.Addr) { p.dst.Store(&a) }

// Pause stops (true) or resumes (false) sending; the frame index does not
// advance while paused.
func (p *Peer) Pause(v bool) { p.paused.Store(v) }

// AnnounceKey tells the receiver the sender's next key, as SDP or the
// gateway's event log would: it switches when the first packet
// authenticates with it, carrying the rollover counter over (RFC 3711
// section 3.3.1).
func (p *Peer) AnnounceKey(k srtpcheck.Key) { p.next.Store(&k) }

// SwitchedAt returns the frame index from which the announced key was in
// use, and whether it has been.
func (p *Peer) SwitchedAt() (uint32, bool) {
	v := p.switchedAt.Load()
	return v - 1, v != 0
}

// Close ends the peer. It is idempotent.
func (p *Peer) Close() {
	p.closed.Do(func() {
		close(p.stop)
		_ = p.cfg.Conn.Close()
	})
	p.wg.Wait()
}

func (p *Peer) sendLoop(ctx *srtp.Context) {
	defer p.wg.Done()
	f := p.cfg.Out
	t := time.NewTicker(frameInterval)
	defer t.Stop()
	seq := uint16(f.SSRC) // any start; ROC handling is the receiver's job
	var plain, enc []byte
	for idx := uint32(0); idx < maxFrames; {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		dp := p.dst.Load()
		if p.paused.Load() || dp == nil {
			continue
		}
		h := rtp.Header{Version: 2, PayloadType: payloadTypePCMU, SequenceNumber: seq + uint16(idx),
			Timestamp: f.TSBase + idx*samplesPerFrame, SSRC: f.SSRC, Marker: idx == 0}
		hb, err := h.Marshal()
		if err != nil {
			return
		}
		plain = append(append(plain[:0], hb...), audioFrame(f.Hz, idx)...)
		enc, err = ctx.EncryptRTP(enc[:0], plain, nil)
		if err != nil {
			return
		}
		now := time.Now()
		_, err = p.cfg.Conn.WriteTo(enc, *dp)
		switch {
		case errors.Is(err, net.ErrClosed):
			return
		case err != nil:
			// EHOSTUNREACH or ENETUNREACH while a link is down: the
			// frame is lost like any other, and counted.
			f.sendError.Add(1)
		}
		f.recordSent(idx, now)
		idx++
	}
}

func (p *Peer) recvLoop(ctx *srtp.Context) {
	defer p.wg.Done()
	f := p.cfg.In
	buf := make([]byte, 2048)
	var plain []byte
	for {
		n, from, err := p.cfg.Conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient error (an ICMP error queued on the socket):
			// go on, unless the peer is closing.
			select {
			case <-p.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		now := time.Now()
		pkt := buf[:n]
		plain, err = ctx.DecryptRTP(plain[:0], pkt, nil)
		switched := false
		if err != nil {
			if next, out, ok := p.tryNext(ctx, pkt, plain[:0]); ok {
				ctx, plain, err, switched = next, out, nil, true
			}
		}
		if err != nil {
			if srtpcheck.OpensWithAny(pkt, p.cfg.Forbidden) {
				f.foreign.Add(1)
			} else {
				f.authFail.Add(1)
			}
			continue
		}
		var h rtp.Header
		hl, err := h.Unmarshal(plain)
		if err != nil || h.SSRC != f.SSRC {
			f.authFail.Add(1)
			continue
		}
		idx := (h.Timestamp - f.TSBase) / samplesPerFrame
		if !bytes.Equal(plain[hl:], audioFrame(f.Hz, idx)) || h.PayloadType != payloadTypePCMU {
			f.mismatch.Add(1)
			continue
		}
		if p.cfg.Relatch || p.dst.Load() == nil {
			p.SetDst(from)
		}
		f.recordArrival(idx, now, addrPortOf(from))
		if switched {
			p.switchedAt.Store(idx + 1)
		}
	}
}

// tryNext tries the announced key on pkt, in a fresh context that starts
// from cur's rollover counter for the stream (RFC 3711 section 3.3.1). On
// success it returns that context, which replaces cur, and the plaintext
// (appended to dst), and forgets the announcement.
func (p *Peer) tryNext(cur *srtp.Context, pkt, dst []byte) (*srtp.Context, []byte, bool) {
	k := p.next.Load()
	if k == nil {
		return nil, nil, false
	}
	var h rtp.Header
	if _, err := h.Unmarshal(pkt); err != nil {
		return nil, nil, false
	}
	c, err := k.Context()
	if err != nil {
		return nil, nil, false
	}
	if roc, ok := cur.ROC(h.SSRC); ok {
		c.SetROC(h.SSRC, roc)
	}
	out, err := c.DecryptRTP(dst, pkt, nil)
	if err != nil {
		return nil, nil, false
	}
	p.next.Store(nil)
	return c, out, true
}

func addrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	if ua, ok := a.(*net.UDPAddr); ok {
		ap = ua.AddrPort()
	} else {
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
