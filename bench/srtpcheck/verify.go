package srtpcheck

import (
	"bytes"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/mediaedge/mediaedge/bench/capture"
	"github.com/mediaedge/mediaedge/bench/report"
)

// VerifyKeys are the keys of both legs of a gateway, each a list of
// epochs in the order they were used (a re-key appends one).
type VerifyKeys struct {
	// InternalIn is K_int: what the internal peer encrypts with towards
	// the gateway (seen in the internal capture).
	InternalIn []Key
	// InternalOut is G_int: the gateway's own key towards the internal
	// peer (internal capture).
	InternalOut []Key
	// CloudOut is G_cloud: the gateway's own key towards the cloud peer
	// (cloud capture).
	CloudOut []Key
	// CloudIn is K_cloud: what the cloud peer encrypts with towards the
	// gateway (cloud capture).
	CloudIn []Key
}

// Violation kinds found by Verify.
const (
	ViolationPlaintext       = "plaintext"        // RTP in clear, payload equal to a payload from the other side
	ViolationForeignKey      = "foreign-key"      // authenticates with a key of the other leg
	ViolationUnauthenticated = "unauthenticated"  // authenticates with no key at all
	ViolationModified        = "modified-payload" // decrypts, but differs from what went in
	ViolationMissing         = "missing"          // went in, never came out
	ViolationROCReset        = "roc-reset"        // authenticates only with the ROC restarted at a re-key
)

// Violation is one finding of Verify.
type Violation struct {
	Kind string `json:"kind"`
	// Side is the capture it was found in: "internal" or "cloud".
	Side string `json:"side"`
	// Packet is the 1-based number of the UDP datagram in that capture.
	Packet int       `json:"packet"`
	Time   time.Time `json:"time"`
	SSRC   uint32    `json:"ssrc"`
	Seq    uint16    `json:"seq"`
	Detail string    `json:"detail"`
}

func (v Violation) String() string {
	return fmt.Sprintf("%s: %s capture datagram %d (SSRC %#08x seq %d): %s", v.Kind, v.Side, v.Packet, v.SSRC, v.Seq, v.Detail)
}

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	// Report has one direction per way through the gateway, with
	// matched packets as received and the added latency.
	Report *report.Report `json:"report"`
	// Violations lists every problem found, in capture order.
	Violations []Violation `json:"violations"`
	// ReKeys lists the key changes seen ("cloud-out SSRC 0x.. epoch 2
	// from seq N").
	ReKeys []string `json:"rekeys,omitempty"`
}

// OK reports whether no violation was found and something was checked.
func (v *VerifyResult) OK() bool {
	if len(v.Violations) != 0 {
		return false
	}
	for _, d := range v.Report.Directions {
		if d.Sent > 0 {
			return true
		}
	}
	return false
}

// streamKey identifies a stream: one SSRC on one flow.
type streamKey struct {
	src, dst netip.AddrPort
	ssrc     uint32
}

// vpkt is an authenticated, decrypted packet of a capture.
type vpkt struct {
	n       int // datagram number
	t       time.Time
	hdr     rtp.Header
	payload []byte
	ext     int64
	used    bool
}

// keyChain decrypts one stream with a list of key epochs, carrying the ROC
// from one epoch to the next as a re-keying gateway must.
type keyChain struct {
	name  string
	keys  []Key
	cur   int
	ctx   *srtp.Context
	ssrc  uint32
	epoch []string // re-keys seen
}

func newKeyChain(name string, keys []Key, ssrc uint32) *keyChain {
	return &keyChain{name: name, keys: keys, ssrc: ssrc, cur: -1}
}

// open tries to authenticate and decrypt b. It reports the plaintext, and
// rocReset when the packet only authenticated with the next epoch's key
// once the ROC was restarted from zero.
func (c *keyChain) open(b []byte, seq uint16) (plain []byte, ok, rocReset bool) {
	if len(c.keys) == 0 {
		return nil, false, false
	}
	if c.cur < 0 {
		for i := range c.keys {
			ctx, err := c.keys[i].Context()
			if err != nil {
				continue
			}
			if p, err := ctx.DecryptRTP(nil, b, nil); err == nil {
				c.cur, c.ctx = i, ctx
				return p, true, false
			}
		}
		return nil, false, false
	}
	if p, err := c.ctx.DecryptRTP(nil, b, nil); err == nil {
		return p, true, false
	}
	roc, _ := c.ctx.ROC(c.ssrc)
	for i := c.cur + 1; i < len(c.keys); i++ {
		ctx, err := c.keys[i].Context()
		if err != nil {
			continue
		}
		ctx.SetROC(c.ssrc, roc)
		if p, err := ctx.DecryptRTP(nil, b, nil); err == nil {
			c.epoch = append(c.epoch, fmt.Sprintf("%s SSRC %#08x: epoch %d from seq %d (ROC %d carried)", c.name, c.ssrc, i+1, seq, roc))
			c.cur, c.ctx = i, ctx
			return p, true, false
		}
		if roc != 0 {
			ctx, _ = c.keys[i].Context()
			if p, err := ctx.DecryptRTP(nil, b, nil); err == nil {
				c.epoch = append(c.epoch, fmt.Sprintf("%s SSRC %#08x: epoch %d from seq %d with the ROC reset to 0", c.name, c.ssrc, i+1, seq))
				c.cur, c.ctx = i, ctx
				return p, true, true
			}
		}
	}
	return nil, false, false
}

// sideResult is what one capture yielded.
type sideResult struct {
	// decrypted packets by chain ("in"/"out"), SSRC, extended sequence
	in, out map[uint32]map[int64]*vpkt
	// plaintexts of every authenticated packet, to recognise a leak
	plain map[string]bool
	// datagrams that authenticated with neither of this side's chains
	rejects []reject
	first   time.Time
	last    time.Time
}

type reject struct {
	n   int
	t   time.Time
	hdr rtp.Header
	raw []byte
	hl  int
}

// Verify checks a gateway's re-keying from a capture taken on its internal
// side and one taken on its cloud side: no plaintext RTP and no packet
// authenticating with the other leg's keys on either side, every payload
// identical after decryption, ROC and sequence continuity across re-keys,
// and the latency added per packet (matching packets by SSRC and extended
// sequence number, which a re-keying gateway keeps). Both captures must
// come from hosts with the same clock for the latency to mean anything.
func Verify(internal, cloud []capture.Datagram, keys VerifyKeys) (*VerifyResult, error) {
	if len(keys.InternalIn)+len(keys.InternalOut) == 0 || len(keys.CloudOut)+len(keys.CloudIn) == 0 {
		return nil, errNoLegKeys
	}
	res := &VerifyResult{Report: &report.Report{Kind: "verify", Target: "captures", Started: time.Now()}}
	all := [][]Key{keys.InternalIn, keys.InternalOut, keys.CloudIn, keys.CloudOut}
	is := res.openSide("internal", internal, keys.InternalIn, keys.InternalOut, all)
	cs := res.openSide("cloud", cloud, keys.CloudIn, keys.CloudOut, all)
	// Datagrams that opened with neither of their own leg's chains.
	res.classify("cloud", cs, is, [][]Key{keys.InternalIn, keys.InternalOut})
	res.classify("internal", is, cs, [][]Key{keys.CloudIn, keys.CloudOut})
	res.Report.Directions = append(res.Report.Directions,
		res.match("internal->cloud", is.in, cs.out, cs, "cloud"),
		res.match("cloud->internal", cs.in, is.out, is, "internal"))
	sort.SliceStable(res.Violations, func(i, j int) bool {
		a, b := res.Violations[i], res.Violations[j]
		if a.Side != b.Side {
			return a.Side < b.Side
		}
		return a.Packet < b.Packet
	})
	return res, nil
}

// openSide opens every datagram of one side with that side's keys. allKeys
// holds every key given (both legs), used only to split captured GSO
// messages.
func (res *VerifyResult) openSide(side string, dgs []capture.Datagram, inKeys, outKeys []Key, allKeys [][]Key) *sideResult {
	sr := &sideResult{in: map[uint32]map[int64]*vpkt{}, out: map[uint32]map[int64]*vpkt{}, plain: map[string]bool{}}
	type chains struct {
		in, out *keyChain
		highest int64
	}
	byStream := map[streamKey]*chains{}
	// handle opens one packet of datagram i and files it; it reports
	// false (and files nothing) when no key of this side opens it.
	handle := func(i int, d capture.Datagram, payload []byte) bool {
		var h rtp.Header
		_, err := h.Unmarshal(payload)
		if err != nil {
			return false
		}
		k := streamKey{d.Src, d.Dst, h.SSRC}
		c := byStream[k]
		if c == nil {
			c = &chains{in: newKeyChain(side+"-in", inKeys, h.SSRC), out: newKeyChain(side+"-out", outKeys, h.SSRC), highest: -1}
			byStream[k] = c
		}
		ext := int64(h.SequenceNumber)
		if c.highest >= 0 {
			ext = c.highest + int64(int16(h.SequenceNumber-uint16(c.highest)))
		}
		var (
			plain []byte
			dst   map[uint32]map[int64]*vpkt
			reset bool
		)
		if p, ok, r := c.out.open(payload, h.SequenceNumber); ok {
			plain, dst, reset = p, sr.out, r
		} else if p, ok, r := c.in.open(payload, h.SequenceNumber); ok {
			plain, dst, reset = p, sr.in, r
		} else {
			return false
		}
		if reset {
			res.Violations = append(res.Violations, Violation{Kind: ViolationROCReset, Side: side, Packet: i + 1, Time: d.Time,
				SSRC: h.SSRC, Seq: h.SequenceNumber, Detail: "authenticates with the next key epoch only with the rollover counter restarted at 0"})
		}
		c.highest = max(c.highest, ext)
		payload = plain[h.MarshalSize():]
		if dst[h.SSRC] == nil {
			dst[h.SSRC] = map[int64]*vpkt{}
		}
		if _, dup := dst[h.SSRC][ext]; !dup {
			dst[h.SSRC][ext] = &vpkt{n: i + 1, t: d.Time, hdr: h, payload: payload, ext: ext}
		}
		sr.plain[string(payload)] = true
		return true
	}
	reject := func(i int, d capture.Datagram, payload []byte) {
		var h rtp.Header
		hl, _ := h.Unmarshal(payload)
		sr.rejects = append(sr.rejects, reject{n: i + 1, t: d.Time, hdr: h, raw: payload, hl: hl})
	}
	for i, d := range dgs {
		if sr.first.IsZero() || d.Time.Before(sr.first) {
			sr.first = d.Time
		}
		if d.Time.After(sr.last) {
			sr.last = d.Time
		}
		if d.Truncated || !capture.LooksLikeRTP(d.Payload) {
			continue
		}
		if handle(i, d, d.Payload) {
			continue
		}
		// A sender using UDP GSO hands the kernel several datagrams in
		// one message; a capture taken on the sending host's loopback or
		// veth interface holds that message as one datagram. Split it
		// where every segment authenticates.
		if segs := splitGSO(d.Payload, allKeys); segs != nil {
			for _, seg := range segs {
				if !handle(i, d, seg) {
					reject(i, d, seg)
				}
			}
			continue
		}
		reject(i, d, d.Payload)
	}
	for _, c := range byStream {
		res.ReKeys = append(res.ReKeys, c.in.epoch...)
		res.ReKeys = append(res.ReKeys, c.out.epoch...)
	}
	sort.Strings(res.ReKeys)
	return sr
}

// classify explains the datagrams of one side that opened with none of
// its own keys: the other leg's keys, a plaintext copy of a payload seen
// on the other side, or nothing at all.
func (res *VerifyResult) classify(side string, sr, other *sideResult, foreign [][]Key) {
	for _, rj := range sr.rejects {
		v := Violation{Side: side, Packet: rj.n, Time: rj.t, SSRC: rj.hdr.SSRC, Seq: rj.hdr.SequenceNumber}
		switch {
		case OpensWithAny(rj.raw, foreign...):
			v.Kind, v.Detail = ViolationForeignKey, "authenticates with a key of the other leg"
		case other.plain[string(rj.raw[rj.hl:])]:
			v.Kind, v.Detail = ViolationPlaintext, "RTP in clear: its payload is a payload of the other side"
		default:
			v.Kind, v.Detail = ViolationUnauthenticated, "authenticates with none of the keys given"
		}
		res.Violations = append(res.Violations, v)
	}
}

// OpensWithAny reports whether the SRTP packet b authenticates with one of
// the keys of sets. It makes a fresh context per key (no replay state), so
// it suits checks of packets that already failed, not a data path.
func OpensWithAny(b []byte, sets ...[]Key) bool {
	for _, set := range sets {
		for _, k := range set {
			ctx, err := k.Context()
			if err != nil {
				continue
			}
			if _, err := ctx.DecryptRTP(nil, b, nil); err == nil {
				return true
			}
		}
	}
	return false
}

// match pairs what went into the gateway on one side with what came out
// on the other. Input packets that did not come out, sent while the output
// capture was not running, are not counted.
func (res *VerifyResult) match(name string, in, out map[uint32]map[int64]*vpkt, outSide *sideResult, side string) report.Direction {
	d := report.Direction{Name: name}
	lat := report.NewLatencyRecorder()
	tl := report.NewTimeline(100 * time.Millisecond)
	var first, last time.Time
	var bytes int64
	var jsum float64
	ssrcs := make([]uint32, 0, len(in))
	for s := range in {
		ssrcs = append(ssrcs, s)
	}
	sort.Slice(ssrcs, func(i, j int) bool { return ssrcs[i] < ssrcs[j] })
	var negative int
	for _, ssrc := range ssrcs {
		ins := sortedPkts(in[ssrc])
		d.Streams++
		var j report.Jitter
		j.SetClockRate(capture.ClockRate(ins[0].hdr.PayloadType))
		var origin time.Time
		for _, p := range ins {
			o := out[ssrc][p.ext]
			if o == nil && (p.t.After(outSide.last) || p.t.Before(outSide.first)) {
				// Outside the other capture: it may have come out
				// unseen. Not counted either way.
				continue
			}
			d.Sent++
			if o == nil {
				d.Lost++
				res.Violations = append(res.Violations, Violation{Kind: ViolationMissing, Side: side, Packet: p.n, Time: p.t,
					SSRC: ssrc, Seq: p.hdr.SequenceNumber, Detail: fmt.Sprintf("%s packet never came out", name)})
				continue
			}
			o.used = true
			if !samePacket(p, o) {
				d.BadPayload++
				res.Violations = append(res.Violations, Violation{Kind: ViolationModified, Side: side, Packet: o.n, Time: o.t,
					SSRC: ssrc, Seq: o.hdr.SequenceNumber, Detail: "decrypted packet differs from what went in"})
				continue
			}
			d.Received++
			delta := o.t.Sub(p.t)
			if delta < 0 {
				negative++
			} else {
				lat.Record(delta)
			}
			if origin.IsZero() {
				origin = o.t
			}
			j.Update(o.t.Sub(origin), o.hdr.Timestamp)
			bytes += int64(len(o.payload))
			if first.IsZero() || p.t.Before(first) {
				first = p.t
			}
			if o.t.After(last) {
				last = o.t
			}
		}
		jm := float64(j.Duration()) / float64(time.Millisecond)
		jsum += jm
		d.JitterMaxMs = max(d.JitterMaxMs, jm)
	}
	for _, ssrc := range ssrcs {
		for _, o := range out[ssrc] {
			if !o.used && o.t.After(first) {
				d.Unknown++
			}
			if o.used {
				tl.Add(o.t.Sub(first), len(o.payload))
			}
		}
	}
	if d.Streams > 0 {
		d.JitterMs = jsum / float64(d.Streams)
	}
	if d.Sent > 0 {
		d.LossPct = 100 * float64(d.Lost) / float64(d.Sent)
	}
	if dur := last.Sub(first).Seconds(); dur > 0 {
		d.DurationS = dur
		d.PPS = float64(d.Received) / dur
		d.Mbps = float64(bytes) * 8 / dur / 1e6
	}
	d.Latency = lat.Summary()
	d.Throughput = tl.Points()
	if negative > 0 {
		res.Report.Notes = append(res.Report.Notes, fmt.Sprintf("%s: %d packets left before they arrived: the captures' clocks differ", name, negative))
	}
	if d.Unknown > 0 {
		res.Report.Notes = append(res.Report.Notes, fmt.Sprintf("%s: %d packets came out that were not seen going in", name, d.Unknown))
	}
	return d
}

func sortedPkts(m map[int64]*vpkt) []*vpkt {
	out := make([]*vpkt, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ext < out[j].ext })
	return out
}

// samePacket compares what a re-keying gateway must keep: payload, payload
// type, marker, timestamp.
func samePacket(a, b *vpkt) bool {
	return bytes.Equal(a.payload, b.payload) && a.hdr.PayloadType == b.hdr.PayloadType &&
		a.hdr.Marker == b.hdr.Marker && a.hdr.Timestamp == b.hdr.Timestamp
}
