package load

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"
)

// read is the reader goroutine of an allocation where there is no
// recvLoop: it hands every datagram to handle until the socket closes.
func (r *turnRun) read(a *allocation) {
	rx := make([]byte, rxBuffer)
	for {
		n, addr, err := a.conn.ReadFromUDPAddrPort(rx)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		r.handle(a, rx[:n], addr, r.now())
	}
}

// handle takes one datagram that arrived on a's socket at now: ChannelData
// and Data indications carry echoes; other STUN messages are answers for
// the pion client. With Direct every datagram from the peer is an echo.
// Called by one goroutine per allocation at a time.
func (r *turnRun) handle(a *allocation, b []byte, addr netip.AddrPort, now int64) {
	n := len(b)
	switch {
	case r.opt.Direct:
		if addr.Port() != a.peer.Port() {
			r.unknown.Add(1)
			return
		}
		if n >= 4 && binary.BigEndian.Uint32(b) == warmMagic {
			a.setReady(1)
			return
		}
		r.echoed(a, b, now)
	case n >= 4 && b[0]&0xc0 == 0x40: // ChannelData (0x4000-0x7fff)
		ch := binary.BigEndian.Uint16(b)
		l := int(binary.BigEndian.Uint16(b[2:]))
		if l > n-4 {
			r.unknown.Add(1)
			return
		}
		a.setReady(uint32(ch))
		r.echoed(a, b[4:4+l], now)
	case stun.IsMessage(b) && binary.BigEndian.Uint16(b) == dataIndication:
		data, err := decodeData(b)
		if err != nil {
			r.unknown.Add(1)
			return
		}
		if r.opt.Indications {
			a.setReady(1)
		}
		r.echoed(a, data, now)
	case a.client != nil:
		from := &net.UDPAddr{IP: addr.Addr().AsSlice(), Port: int(addr.Port())}
		_, _ = a.client.HandleInbound(b, from)
	default:
		r.unknown.Add(1)
	}
}

// dataIndication is the STUN message type of a Data indication (method
// 0x007, class indication).
const dataIndication = 0x0017

func decodeData(b []byte) ([]byte, error) {
	var m stun.Message
	m.Raw = append([]byte(nil), b...)
	if err := m.Decode(); err != nil {
		return nil, err
	}
	return m.Get(stun.AttrData)
}

// echoed checks an echoed payload and records its round trip.
func (r *turnRun) echoed(a *allocation, p []byte, now int64) {
	s, k, ok := payloadIndex(p)
	if !ok {
		if len(p) >= 4 && binary.BigEndian.Uint32(p) == warmMagic {
			return
		}
		a.bad++
		return
	}
	if s != a.id || int(k) >= a.n || !checkPayload(p, s, k, r.opt.PayloadBytes) {
		a.bad++
		return
	}
	before := a.tracker.dup
	a.tracker.add(int(k))
	if a.tracker.dup != before {
		return
	}
	r.received.Add(1)
	if sent := a.sendNs[k].Load(); sent > 0 && now >= sent {
		a.jitter.UpdateTransit(time.Duration(now - sent))
		r.latMu.Lock()
		r.lat.Record(time.Duration(now - sent))
		r.tl.Add(time.Duration(now-r.mediaT0.Load()), len(p))
		r.latMu.Unlock()
	}
	a.bytes += int64(len(p))
	a.last = now
}

// send runs the data phase: round robin over the allocations, paced to
// Rate or windowed.
func (r *turnRun) send(ctx context.Context) {
	var p pacer
	p.init()
	defer p.close()
	opt := r.opt
	total := 0
	for _, a := range r.allocs {
		total += a.n
	}
	N := len(r.allocs)
	start := r.now()
	r.first = start
	var given int64
	payload := make([]byte, opt.PayloadBytes)
	for i := 0; i < total; i++ {
		a, k := r.allocs[i%N], i/N
		stop := i%256 == 0
		if opt.Rate > 0 {
			due := start + int64(float64(i)*1e9/opt.Rate)
			for wait := due - r.now(); wait > 0 && ctx.Err() == nil; wait = due - r.now() {
				p.sleep(min(max(time.Duration(wait), sendQuantum), 50*time.Millisecond))
				stop = true
			}
		} else if int64(i)-r.received.Load()-given >= int64(opt.Window) {
			last, since := r.received.Load(), time.Now()
			for ctx.Err() == nil && int64(i)-r.received.Load()-given >= int64(opt.Window) {
				if got := r.received.Load(); got != last {
					last, since = got, time.Now()
				} else if time.Since(since) > windowStall {
					given = int64(i) - got
					break
				}
				p.sleep(20 * time.Microsecond)
			}
			stop = true
		}
		if stop && ctx.Err() != nil {
			r.stopped = fmt.Sprintf("stopped after %d of %d round trips: %v", i, total, context.Cause(ctx))
			return
		}
		fillPayload(payload, a.id, uint32(k))
		a.sendNs[k].Store(r.now())
		var err error
		switch {
		case opt.Direct:
			_, err = a.conn.WriteToUDPAddrPort(payload, a.peer)
		case opt.Indications:
			err = a.sendIndication(payload)
		default:
			err = a.sendChannelData(payload)
		}
		r.sent++
		if err != nil {
			r.sendErrs++
		}
	}
}

// sendChannelData frames p as ChannelData on the bound channel (RFC 8656
// section 12.4; no padding over UDP).
func (a *allocation) sendChannelData(p []byte) error {
	b := a.tx[:4+len(p)]
	binary.BigEndian.PutUint16(b, uint16(a.channel.Load()))
	binary.BigEndian.PutUint16(b[2:], uint16(len(p)))
	copy(b[4:], p)
	_, err := a.conn.WriteToUDPAddrPort(b, a.server)
	return err
}

// sendIndication wraps p in a Send indication to the peer.
func (a *allocation) sendIndication(p []byte) error {
	m := a.msg
	m.Reset()
	m.Type = stun.NewType(stun.MethodSend, stun.ClassIndication)
	binary.BigEndian.PutUint64(m.TransactionID[:], uint64(time.Now().UnixNano()))
	binary.BigEndian.PutUint32(m.TransactionID[8:], a.id)
	m.WriteHeader()
	if err := (stun.XORMappedAddress{IP: a.peer.Addr().AsSlice(), Port: int(a.peer.Port())}).AddToAs(m, stun.AttrXORPeerAddress); err != nil {
		return err
	}
	m.Add(stun.AttrData, p)
	if err := stun.Fingerprint.AddTo(m); err != nil {
		return err
	}
	_, err := a.conn.WriteToUDPAddrPort(m.Raw, a.server)
	return err
}

func (r *turnRun) drain(ctx context.Context) {
	last, quiet := int64(-1), time.Now()
	for ctx.Err() == nil {
		got := r.received.Load()
		if got >= r.sent {
			return
		}
		if got != last {
			last, quiet = got, time.Now()
		} else if time.Since(quiet) > r.opt.Drain {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// sendQuantum is the shortest sleep of the paced sender: at 20,000 round
// trips per second a sleep per datagram (50 µs) costs a wake-up each; the
// datagrams due meanwhile go out together after the sleep, each stamped
// with its own send time.
const sendQuantum = 200 * time.Microsecond
