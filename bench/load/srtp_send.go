package load

import (
	"context"
	"fmt"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// rtcpMarker tags bench's SRTCP sender reports (upper NTP word): "MEBR".
const rtcpMarker = 0x4d454252

// windowStall is how long window mode waits for the window to move before
// it counts the outstanding packets as lost and goes on.
const windowStall = 200 * time.Millisecond

// sender sends the packets of one direction, paced or windowed. It owns
// the tx contexts of its streams.
type sender struct {
	r     *srtpRun
	d     *direction
	msgs  []udpbatch.Message
	n     int
	sock  *benchSocket
	plain []byte
	hdr   rtp.Header
	pacer pacer
	// replay schedule: (stream, packet) in send order with offsets
	sched []schedEntry
}

type schedEntry struct {
	st *stream
	k  int
	at int64 // ns after the media start
}

func newSender(r *srtpRun, d *direction) *sender {
	s := &sender{r: r, d: d, msgs: make([]udpbatch.Message, batchSize), plain: make([]byte, 0, 2048)}
	for i := range s.msgs {
		s.msgs[i].Buf = make([]byte, 0, 2048)
	}
	if len(r.opt.Replay) > 0 {
		s.sched = replaySchedule(d.streams)
	}
	return s
}

// replaySchedule merges the streams' captured timing into one send order.
func replaySchedule(streams []*stream) []schedEntry {
	var out []schedEntry
	var origin time.Time
	for _, st := range streams {
		if t := st.replay.Packets[0].Time; origin.IsZero() || t.Before(origin) {
			origin = t
		}
	}
	for _, st := range streams {
		for k := 0; k < st.n; k++ {
			out = append(out, schedEntry{st: st, k: k, at: int64(st.replay.Packets[k].Time.Sub(origin))})
		}
	}
	sortSchedule(out)
	return out
}

// entry returns the i-th packet to send and its due time (ns after the
// start; -1 in window mode).
func (s *sender) entry(i int) (*stream, int, int64) {
	opt := s.r.opt
	if s.sched != nil {
		e := s.sched[i]
		if opt.AsFastAsPossible {
			return e.st, e.k, -1
		}
		return e.st, e.k, e.at
	}
	// Synthetic: round robin over the streams. Streams may have
	// different counts only in replay mode, so i/S is the index.
	S := len(s.d.streams)
	st, k := s.d.streams[i%S], i/S
	if opt.Rate <= 0 {
		return st, k, -1
	}
	return st, k, int64(float64(i) * 1e9 / opt.Rate)
}

func (s *sender) run(ctx context.Context) {
	s.pacer.init()
	defer s.pacer.close()
	d, opt := s.d, s.r.opt
	start := s.r.now()
	d.firstSend = start
	var given int64 // window mode: packets written off as lost
	for i := 0; i < d.total; i++ {
		st, k, due := s.entry(i)
		stop := i%256 == 0
		if due >= 0 {
			if wait := start + due - s.r.now(); wait > 0 {
				s.flush()
				// Sleep in slices so that a slow rate still stops soon
				// after ctx ends.
				for ; wait > 0 && ctx.Err() == nil; wait = start + due - s.r.now() {
					s.pacer.sleep(min(time.Duration(wait), 50*time.Millisecond))
				}
				stop = true
			}
		}
		if stop && ctx.Err() != nil {
			d.stopped = fmt.Sprintf("stopped after %d of %d packets: %v", i, d.total, context.Cause(ctx))
			break
		}
		if due < 0 && int64(i)-d.received.Load()-given >= int64(opt.Window) {
			s.flush()
			given += s.waitWindow(ctx, int64(i), given)
		}
		s.add(st, k)
	}
	s.flush()
	d.lastSend = s.r.now()
}

// waitWindow waits until fewer than Window packets are in flight; after
// windowStall without progress it returns how many to write off as lost.
func (s *sender) waitWindow(ctx context.Context, sent, given int64) int64 {
	last, since := s.d.received.Load(), time.Now()
	for ctx.Err() == nil {
		got := s.d.received.Load()
		if sent-got-given < int64(s.r.opt.Window) {
			return 0
		}
		if got != last {
			last, since = got, time.Now()
		} else if time.Since(since) > windowStall {
			return sent - got - given
		}
		s.pacer.sleep(20 * time.Microsecond)
	}
	return 0
}

// add builds and encrypts packet k of st into the batch.
func (s *sender) add(st *stream, k int) {
	if s.sock != st.src || s.n == len(s.msgs) {
		s.flush()
		s.sock = st.src
	}
	opt := s.r.opt
	h := &s.hdr
	var payload []byte
	if st.replay != nil {
		p := &st.replay.Packets[k]
		*h = p.Header
		h.SSRC = st.ssrc
		h.SequenceNumber = st.seq0 + uint16(k)
		payload = p.Raw[p.HeaderLen:]
		// The captured header's padding flag stays with its payload
		// bytes; extensions and CSRCs are kept as captured.
	} else {
		*h = rtp.Header{Version: 2, PayloadType: opt.PayloadType, SequenceNumber: st.seq0 + uint16(k),
			Timestamp: st.ts0 + uint32(k)*st.tsStep, SSRC: st.ssrc, Marker: k == 0}
	}
	hl := h.MarshalSize()
	size := hl
	if payload != nil {
		size += len(payload)
	} else {
		size += opt.PayloadBytes
	}
	if cap(s.plain) < size {
		s.plain = make([]byte, 0, size)
	}
	b := s.plain[:size]
	if _, err := h.MarshalTo(b); err != nil {
		s.d.sendErrors++
		return
	}
	if payload != nil {
		copy(b[hl:], payload)
	} else {
		fillPayload(b[hl:], st.id, uint32(k))
	}
	m := &s.msgs[s.n]
	out, err := st.tx.EncryptRTP(m.Buf[:0], b, h)
	if err != nil {
		s.d.sendErrors++
		return
	}
	m.Buf, m.N = out, len(out)
	m.Addr = st.target
	st.sendNs[k].Store(s.r.now())
	s.n++
}

// flush sends the batch.
func (s *sender) flush() {
	if s.n == 0 {
		return
	}
	msgs := s.msgs[:s.n]
	s.sock.sendMu.Lock()
	for len(msgs) > 0 {
		n, err := s.sock.bc.WriteBatch(msgs)
		s.d.sent += int64(n)
		msgs = msgs[n:]
		if err != nil {
			// The datagram the kernel refused ends the batch; count it
			// as sent-and-lost so that loss accounting stays exact.
			if len(msgs) > 0 {
				s.d.sendErrors++
				s.d.sent++
				msgs = msgs[1:]
			}
		}
	}
	s.sock.sendMu.Unlock()
	s.n = 0
}

// sendRTCP sends opt.RTCP encrypted sender reports per stream and waits
// (up to a second) for them to come back.
func (r *srtpRun) sendRTCP(ctx context.Context) {
	var want int64
	for _, st := range r.streams {
		for j := 0; j < r.opt.RTCP; j++ {
			sr := rtcp.SenderReport{SSRC: st.ssrc, NTPTime: uint64(rtcpMarker)<<32 | uint64(j), RTPTime: st.ts0, OctetCount: uint32(j)}
			b, err := sr.Marshal()
			if err != nil {
				continue
			}
			out, err := st.txRTCP.EncryptRTCP(nil, b, nil)
			if err != nil {
				continue
			}
			st.rsrc.sendMu.Lock()
			_, _ = st.rsrc.uc.WriteToUDPAddrPort(out, st.rtarget)
			st.rsrc.sendMu.Unlock()
			want++
		}
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var got int64
		for _, st := range r.streams {
			got += st.rtcpOK.Load() + st.rtcpBad.Load()
		}
		if got >= want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
