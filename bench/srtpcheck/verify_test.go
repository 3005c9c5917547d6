package srtpcheck

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/mediaedge/mediaedge/bench/capture"
)

// capturePair builds the two captures of a gateway re-keying one stream
// each way, with a fixed 300 µs delay, as pcap bytes read back through
// the capture reader.
type capturePair struct {
	t                          *testing.T
	kInt, gInt, gCloud, kCloud Key
	gCloud2                    Key
	internal, cloud            []capture.Datagram
	internalPeer, gwInt        netip.AddrPort
	gwCloud, cloudPeer         netip.AddrPort
	t0                         time.Time
}

const verifyDelay = 300 * time.Microsecond

func newCapturePair(t *testing.T) *capturePair {
	s, _ := LookupSuite("AES_CM_128_HMAC_SHA1_80")
	cp := &capturePair{t: t, t0: time.Unix(1700000000, 0),
		internalPeer: netip.MustParseAddrPort("192.0.2.10:5004"), gwInt: netip.MustParseAddrPort("192.0.2.1:40000"),
		gwCloud: netip.MustParseAddrPort("198.51.100.1:40002"), cloudPeer: netip.MustParseAddrPort("198.51.100.20:3478")}
	for _, k := range []*Key{&cp.kInt, &cp.gInt, &cp.gCloud, &cp.kCloud, &cp.gCloud2} {
		*k, _ = NewKey(s)
	}
	return cp
}

func ctxOf(t *testing.T, k Key) *srtp.Context {
	c, err := k.Context()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type pkt struct {
	at       time.Time
	src, dst netip.AddrPort
	b        []byte
}

func rtpPlain(ssrc uint32, seq uint16, i int) []byte {
	h := rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: 1000 + uint32(i)*160, SSRC: ssrc}
	b, _ := h.Marshal()
	p := make([]byte, 160)
	binary.BigEndian.PutUint32(p, ssrc)
	for j := 4; j < len(p); j++ {
		p[j] = byte(i*7 + j)
	}
	return append(b, p...)
}

func encrypt(t *testing.T, c *srtp.Context, plain []byte) []byte {
	out, err := c.EncryptRTP(nil, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func toDatagrams(t *testing.T, pkts []pkt) []capture.Datagram {
	var buf bytes.Buffer
	w, err := capture.NewPcapWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		if err := w.Write(p.at, p.src, p.dst, p.b); err != nil {
			t.Fatal(err)
		}
	}
	d, _, err := capture.ReadCapture(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// build makes n packets each way; mutate may change the cloud side's
// packets (index, direction "out" = gateway to cloud).
func (cp *capturePair) build(n int, seq0 uint16, mutate func(i int, plain []byte, out *[]pkt, def func([]byte) []byte)) {
	t := cp.t
	const ssrcUp, ssrcDown = 0x11111111, 0x22222222
	kIntC, gCloudC, kCloudC, gIntC := ctxOf(t, cp.kInt), ctxOf(t, cp.gCloud), ctxOf(t, cp.kCloud), ctxOf(t, cp.gInt)
	var in, out []pkt
	for i := 0; i < n; i++ {
		at := cp.t0.Add(time.Duration(i) * 20 * time.Millisecond)
		seq := seq0 + uint16(i)
		up := rtpPlain(ssrcUp, seq, i)
		in = append(in, pkt{at, cp.internalPeer, cp.gwInt, encrypt(t, kIntC, up)})
		def := func(p []byte) []byte { return encrypt(t, gCloudC, p) }
		if mutate != nil {
			mutate(i, up, &out, def)
		} else {
			out = append(out, pkt{at.Add(verifyDelay), cp.gwCloud, cp.cloudPeer, def(up)})
		}
		down := rtpPlain(ssrcDown, seq, i)
		dt := at.Add(10 * time.Millisecond)
		out = append(out, pkt{dt, cp.cloudPeer, cp.gwCloud, encrypt(t, kCloudC, down)})
		in = append(in, pkt{dt.Add(verifyDelay), cp.gwInt, cp.internalPeer, encrypt(t, gIntC, down)})
	}
	cp.internal, cp.cloud = toDatagrams(t, in), toDatagrams(t, out)
}

func (cp *capturePair) keys() VerifyKeys {
	return VerifyKeys{InternalIn: []Key{cp.kInt}, InternalOut: []Key{cp.gInt}, CloudOut: []Key{cp.gCloud, cp.gCloud2}, CloudIn: []Key{cp.kCloud}}
}

func (cp *capturePair) verify() *VerifyResult {
	res, err := Verify(cp.internal, cp.cloud, cp.keys())
	if err != nil {
		cp.t.Fatal(err)
	}
	return res
}

func kinds(res *VerifyResult) map[string]int {
	m := map[string]int{}
	for _, v := range res.Violations {
		m[v.Kind]++
	}
	return m
}

func TestVerifyCleanPair(t *testing.T) {
	cp := newCapturePair(t)
	cp.build(50, 1000, nil)
	res := cp.verify()
	if !res.OK() {
		t.Fatalf("clean pair: %v", res.Violations)
	}
	for _, d := range res.Report.Directions {
		if d.Sent != 50 || d.Received != 50 || d.Lost != 0 {
			t.Errorf("%s: %+v", d.Name, d)
		}
		// Every packet took exactly 300 µs: all percentiles are 300 µs
		// (HDR resolution 0.1 %), and the jitter is zero.
		l := d.Latency
		for _, v := range []float64{l.P50, l.P99, l.P999, l.Max} {
			if v < 299.7 || v > 300.3 {
				t.Errorf("%s: latency %+v, want 300 µs everywhere", d.Name, l)
			}
		}
		if d.JitterMs != 0 {
			t.Errorf("%s: jitter %v", d.Name, d.JitterMs)
		}
	}
}

func TestVerifyDetects(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(cp *capturePair) func(i int, plain []byte, out *[]pkt, def func([]byte) []byte)
		want   map[string]int
	}{
		{"one plaintext packet", func(cp *capturePair) func(int, []byte, *[]pkt, func([]byte) []byte) {
			return func(i int, plain []byte, out *[]pkt, def func([]byte) []byte) {
				at := cp.t0.Add(time.Duration(i)*20*time.Millisecond + verifyDelay)
				*out = append(*out, pkt{at, cp.gwCloud, cp.cloudPeer, def(plain)})
				if i == 7 {
					*out = append(*out, pkt{at.Add(time.Microsecond), cp.gwCloud, cp.cloudPeer, plain})
				}
			}
		}, map[string]int{ViolationPlaintext: 1}},
		{"packet with the internal key", func(cp *capturePair) func(int, []byte, *[]pkt, func([]byte) []byte) {
			kIntC := ctxOf(t, cp.kInt)
			return func(i int, plain []byte, out *[]pkt, def func([]byte) []byte) {
				at := cp.t0.Add(time.Duration(i)*20*time.Millisecond + verifyDelay)
				b := def(plain)
				if i == 9 {
					b = encrypt(t, kIntC, plain)
				}
				*out = append(*out, pkt{at, cp.gwCloud, cp.cloudPeer, b})
			}
		}, map[string]int{ViolationForeignKey: 1, ViolationMissing: 1}},
		{"modified payload", func(cp *capturePair) func(int, []byte, *[]pkt, func([]byte) []byte) {
			return func(i int, plain []byte, out *[]pkt, def func([]byte) []byte) {
				at := cp.t0.Add(time.Duration(i)*20*time.Millisecond + verifyDelay)
				if i == 11 {
					plain = bytes.Clone(plain)
					plain[len(plain)-1] ^= 0x40
				}
				*out = append(*out, pkt{at, cp.gwCloud, cp.cloudPeer, def(plain)})
			}
		}, map[string]int{ViolationModified: 1}},
		{"missing packet", func(cp *capturePair) func(int, []byte, *[]pkt, func([]byte) []byte) {
			return func(i int, plain []byte, out *[]pkt, def func([]byte) []byte) {
				at := cp.t0.Add(time.Duration(i)*20*time.Millisecond + verifyDelay)
				b := def(plain) // encrypt anyway: the SRTP index advances
				if i != 13 {
					*out = append(*out, pkt{at, cp.gwCloud, cp.cloudPeer, b})
				}
			}
		}, map[string]int{ViolationMissing: 1}},
		{"garbage", func(cp *capturePair) func(int, []byte, *[]pkt, func([]byte) []byte) {
			return func(i int, plain []byte, out *[]pkt, def func([]byte) []byte) {
				at := cp.t0.Add(time.Duration(i)*20*time.Millisecond + verifyDelay)
				b := def(plain)
				if i == 5 {
					b[20] ^= 1 // tag check fails
				}
				*out = append(*out, pkt{at, cp.gwCloud, cp.cloudPeer, b})
			}
		}, map[string]int{ViolationUnauthenticated: 1, ViolationMissing: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cp := newCapturePair(t)
			cp.build(30, 500, tc.mutate(cp))
			res := cp.verify()
			got := kinds(res)
			if len(got) != len(tc.want) {
				t.Fatalf("violations %v, want %v", res.Violations, tc.want)
			}
			for k, n := range tc.want {
				if got[k] != n {
					t.Errorf("%s: %d, want %d (%v)", k, got[k], n, res.Violations)
				}
			}
			if res.OK() {
				t.Error("reported OK")
			}
		})
	}
}

// A re-key on the cloud leg after the sequence number wrapped: the gateway
// must carry the ROC into the new key's context.
func TestVerifyReKeyROC(t *testing.T) {
	for _, carry := range []bool{true, false} {
		cp := newCapturePair(t)
		g1, g2 := ctxOf(t, cp.gCloud), ctxOf(t, cp.gCloud2)
		cp.build(80, 65500, func(i int, plain []byte, out *[]pkt, _ func([]byte) []byte) {
			at := cp.t0.Add(time.Duration(i)*20*time.Millisecond + verifyDelay)
			var b []byte
			switch {
			case i < 60:
				b = encrypt(t, g1, plain) // wraps at i == 36: ROC 1
			default:
				if i == 60 && carry {
					roc, _ := g1.ROC(0x11111111)
					g2.SetROC(0x11111111, roc)
				}
				b = encrypt(t, g2, plain)
			}
			*out = append(*out, pkt{at, cp.gwCloud, cp.cloudPeer, b})
		})
		res := cp.verify()
		if carry {
			if !res.OK() || len(res.ReKeys) != 1 {
				t.Errorf("carried ROC: violations %v, re-keys %q", res.Violations, res.ReKeys)
			}
			continue
		}
		if got := kinds(res); got[ViolationROCReset] != 1 {
			t.Errorf("ROC reset: violations %v", res.Violations)
		}
	}
}

func TestVerifyNeedsKeys(t *testing.T) {
	if _, err := Verify(nil, nil, VerifyKeys{}); err == nil {
		t.Error("no keys accepted")
	}
}

// TestVerifySplitsGSOMessages checks captures of a sender using UDP GSO:
// on loopback and veth, the kernel's one message of several datagrams is
// captured as one datagram. Verify must split it back, and must still
// refuse a concatenation whose segments do not authenticate.
func TestVerifySplitsGSOMessages(t *testing.T) {
	cp := newCapturePair(t)
	var pending []byte
	var pendingAt time.Time
	cp.build(50, 1000, func(i int, plain []byte, out *[]pkt, def func([]byte) []byte) {
		// Gateway to cloud: packets go out in GSO messages of up to 4.
		if len(pending) == 0 {
			pendingAt = cp.t0.Add(time.Duration(i)*20*time.Millisecond + verifyDelay)
		}
		pending = append(pending, def(plain)...)
		if i%4 == 3 || i == 49 {
			*out = append(*out, pkt{pendingAt, cp.gwCloud, cp.cloudPeer, pending})
			pending = nil
		}
	})
	res := cp.verify()
	if !res.OK() {
		t.Fatalf("GSO captures: %v", res.Violations)
	}
	for _, d := range res.Report.Directions {
		if d.Sent != 50 || d.Received != 50 {
			t.Errorf("%s: sent %d received %d, want 50 each", d.Name, d.Sent, d.Received)
		}
	}
	// The same concatenation with one segment under the internal key: the
	// split still happens (every segment authenticates with a key given)
	// and the foreign segment is reported as such.
	cp2 := newCapturePair(t)
	kIntC := ctxOf(t, cp2.kInt)
	var msg []byte
	cp2.build(8, 2000, func(i int, plain []byte, out *[]pkt, def func([]byte) []byte) {
		b := def(plain)
		if i == 5 {
			b = encrypt(t, kIntC, plain)
		}
		msg = append(msg, b...)
		if i%4 == 3 {
			*out = append(*out, pkt{cp2.t0.Add(time.Duration(i) * 20 * time.Millisecond), cp2.gwCloud, cp2.cloudPeer, msg})
			msg = nil
		}
	})
	// It is reported under the wrong key, and missing under the right one.
	if k := kinds(cp2.verify()); k[ViolationForeignKey] != 1 || k[ViolationMissing] != 1 || len(k) != 2 {
		t.Errorf("violations %v, want exactly the packet under the internal key reported", k)
	}
	// Random bytes glued to a packet are not a GSO message.
	if segs := splitGSO(append(encrypt(t, ctxOf(t, cp.gCloud), rtpPlain(1, 1, 1)), 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1), [][]Key{{cp.gCloud}}); segs != nil {
		t.Errorf("split a datagram whose tail does not authenticate into %d segments", len(segs))
	}
}
