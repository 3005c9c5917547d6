// Package benchtest holds a re-keying SRTP forwarder for bench's tests: a
// minimal stand-in for a gateway with fixed keys, with switches that make
// it misbehave in exactly known ways.
package benchtest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// Key is a master key||salt for AES_CM_128_HMAC_SHA1_80.
type Key []byte

// Config describes the two legs. A peer sends to A encrypted with KeyA; the
// forwarder re-encrypts with KeyRB and sends to BPeer from B. The reverse
// goes B (KeyB) to APeer from A (KeyRA).
type Config struct {
	KeyA, KeyRB, KeyB, KeyRA Key
	// APeer and BPeer are where forwarded packets go.
	APeer, BPeer netip.AddrPort
	// DropEvery drops every n-th RTP packet of each direction (0: none).
	DropEvery int
	// Plain forwards the decrypted RTP without re-encrypting it.
	Plain bool
	// Duplicate sends every n-th RTP packet twice (0: never).
	Duplicate int
}

// Forwarder relays between two loopback sockets. It starts in New and
// stops in Close; it is safe for concurrent use.
type Forwarder struct {
	// set in New, never changed
	cfg  Config
	a, b *net.UDPConn
	wg   sync.WaitGroup

	// outKey[i] is a new outbound key for direction i (0: A to B, 1: B to
	// A), taken by that direction's goroutine.
	outKey [2]atomic.Pointer[Key]

	// Forwarded counts RTP packets sent on; Dropped those dropped on
	// purpose; Failed those that did not decrypt.
	Forwarded, Dropped, Failed atomic.Int64
}

// SwitchOutKey makes direction dir (0: A to B, 1: B to A) encrypt with k
// from its next packet on, carrying each stream's rollover counter, as a
// re-keying gateway does.
func (f *Forwarder) SwitchOutKey(dir int, k Key) { f.outKey[dir].Store(&k) }

// New binds both legs on 127.0.0.1 (ephemeral ports) and starts one
// goroutine per direction.
func New(cfg Config) (*Forwarder, error) {
	a, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	b, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		a.Close()
		return nil, err
	}
	// Room for a second of a test's packets while this goroutine waits
	// for a CPU on a busy machine (the default is a few hundred).
	for _, c := range []*net.UDPConn{a, b} {
		_ = c.SetReadBuffer(4 << 20)
		_ = c.SetWriteBuffer(4 << 20)
	}
	f := &Forwarder{cfg: cfg, a: a, b: b}
	dirs := []struct {
		in, out      *net.UDPConn
		inKey, outKy Key
		peer         netip.AddrPort
	}{
		{a, b, cfg.KeyA, cfg.KeyRB, cfg.BPeer},
		{b, a, cfg.KeyB, cfg.KeyRA, cfg.APeer},
	}
	for i, d := range dirs {
		dec, err1 := context(d.inKey)
		enc, err2 := context(d.outKy)
		if err := errors.Join(err1, err2); err != nil {
			f.Close()
			return nil, err
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.relay(i, d.in, d.out, d.peer, dec, enc)
		}()
	}
	return f, nil
}

func context(k Key) (*srtp.Context, error) {
	if len(k) != 30 {
		return nil, fmt.Errorf("benchtest: key needs 30 bytes, has %d", len(k))
	}
	return srtp.CreateContext(k[:16], k[16:], srtp.ProtectionProfileAes128CmHmacSha1_80)
}

// A and B are the legs' addresses.
func (f *Forwarder) A() netip.AddrPort { return f.a.LocalAddr().(*net.UDPAddr).AddrPort() }

// B is the address of the B leg.
func (f *Forwarder) B() netip.AddrPort { return f.b.LocalAddr().(*net.UDPAddr).AddrPort() }

// Close stops both directions and waits for them. Idempotent.
func (f *Forwarder) Close() {
	f.a.Close()
	f.b.Close()
	f.wg.Wait()
}

func (f *Forwarder) relay(dir int, in, out *net.UDPConn, peer netip.AddrPort, dec, enc *srtp.Context) {
	buf := make([]byte, 2048)
	plain := make([]byte, 0, 2048)
	cipher := make([]byte, 0, 2048)
	var h rtp.Header
	var rh rtcp.Header
	n := 0
	for {
		m, _, err := in.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		pkt := buf[:m]
		if m >= 2 && pkt[1] >= 192 && pkt[1] <= 223 {
			p, err := dec.DecryptRTCP(plain[:0], pkt, &rh)
			if err != nil {
				f.Failed.Add(1)
				continue
			}
			c, err := enc.EncryptRTCP(cipher[:0], p, nil)
			if err == nil {
				_, _ = out.WriteToUDPAddrPort(c, peer)
			}
			continue
		}
		p, err := dec.DecryptRTP(plain[:0], pkt, &h)
		if err != nil {
			f.Failed.Add(1)
			continue
		}
		n++
		if f.cfg.DropEvery > 0 && n%f.cfg.DropEvery == 0 {
			f.Dropped.Add(1)
			continue
		}
		if k := f.outKey[dir].Swap(nil); k != nil {
			if next, err := context(*k); err == nil {
				roc, _ := enc.ROC(h.SSRC)
				next.SetROC(h.SSRC, roc)
				enc = next
			}
		}
		c := p
		if !f.cfg.Plain {
			if c, err = enc.EncryptRTP(cipher[:0], p, nil); err != nil {
				continue
			}
		}
		_, _ = out.WriteToUDPAddrPort(c, peer)
		if f.cfg.Duplicate > 0 && n%f.cfg.Duplicate == 0 {
			_, _ = out.WriteToUDPAddrPort(c, peer)
		}
		f.Forwarded.Add(1)
	}
}
