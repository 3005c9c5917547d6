package load

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/mediaedge/mediaedge/bench/capture"
	"github.com/mediaedge/mediaedge/bench/report"
	"github.com/mediaedge/mediaedge/bench/srtpcheck"
)

// Flow is one stream of one direction through the system under test: bench
// encrypts with TxKey, sends from Src to Target, receives what the system
// sends to Recv and decrypts it with RxKey.
type Flow struct {
	// Direction names the direction ("internal->cloud"); flows of one
	// direction share a sender and a row of the report.
	Direction string
	// TxKey encrypts what bench sends; RxKey decrypts what comes out.
	TxKey, RxKey srtpcheck.Key
	// Src is the local address to send from; empty means one ephemeral
	// socket per direction.
	Src string
	// Target is where the stream is sent.
	Target netip.AddrPort
	// Recv is the local address where the re-keyed stream arrives.
	Recv string
	// RTCPSrc, RTCPTarget and RTCPRecv are the SRTCP path. A zero
	// RTCPTarget means SRTCP shares the RTP path (rtcp-mux).
	RTCPSrc    string
	RTCPTarget netip.AddrPort
	RTCPRecv   string
	// SSRC is the stream's SSRC; 0 picks one.
	SSRC uint32
}

// SRTPOptions describe the load of an SRTP run. Every run is bounded: by
// Count (or Rate×Duration) packets per stream and by MaxTime in all.
type SRTPOptions struct {
	// Target names the system under test in the report.
	Target string
	// Count is the number of packets per stream; 0 means
	// Rate×Duration spread over the streams of a direction.
	Count int
	// Rate is the aggregate packets/s of each direction; 0 means as fast
	// as possible with at most Window packets in flight.
	Rate float64
	// Window bounds packets in flight per direction in window mode
	// (default 256).
	Window int
	// Duration is the send phase when Count is 0 (default 5 s).
	Duration time.Duration
	// MaxTime bounds the whole run (default 3×Duration + 10 s).
	MaxTime time.Duration
	// PayloadBytes is the synthetic RTP payload size (default 160, at
	// least 12, at most 1400).
	PayloadBytes int
	// PayloadType, ClockRate and Ptime shape synthetic streams (defaults
	// 0, 8000 Hz, 20 ms: G.711).
	PayloadType uint8
	ClockRate   uint32
	Ptime       time.Duration
	// Replay, when set, replaces synthetic payloads: stream i of a
	// direction replays Replay[i mod len], keeping its timing (unless
	// AsFastAsPossible), payload types, sizes, marker bits, timestamps
	// and SSRC (when unique); sequence numbers are renumbered from the
	// first one so that the SRTP index is contiguous.
	Replay           []*capture.RTPStream
	AsFastAsPossible bool
	// RTCP is the number of SRTCP sender reports sent per stream before
	// the media phase and verified on the way out.
	RTCP int
	// Drain is how long to wait for stragglers after the last send
	// (default 500 ms).
	Drain time.Duration
	// PID, when not 0, is the system under test: its CPU time and RSS
	// during the media phase go into the report.
	PID int
	// Conns are sockets bound by the caller (so that their addresses
	// could be given to the system under test first); flows name them by
	// address in Src and Recv. The run takes them over and closes them.
	Conns []*net.UDPConn
	// RecvBuffer and SendBuffer size bench's own sockets (default 4 MiB
	// and 1 MiB).
	RecvBuffer, SendBuffer int
	// WritePcap, when set, receives a pcap of every datagram that came
	// back, as received (still encrypted).
	WritePcap io.Writer
	// Rekey, when set, re-keys the system under test during the media
	// phase: every RekeyInterval it is called for each flow (by index) and
	// returns the new key the output of that flow will be encrypted with,
	// or ok false when the flow is not re-keyed. bench switches to the new
	// key (carrying the rollover counter) when the old one stops
	// authenticating, and keeps the old one for packets still in flight.
	Rekey         func(ctx context.Context, flow int) (key srtpcheck.Key, ok bool, err error)
	RekeyInterval time.Duration
	// Progress, when set, gets a progress line every second once the run
	// is longer than three seconds (meant for a terminal).
	Progress io.Writer
}

func (o *SRTPOptions) setDefaults() error {
	if o.Window <= 0 {
		o.Window = 256
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.MaxTime <= 0 {
		o.MaxTime = 3*o.Duration + 10*time.Second
	}
	if o.PayloadBytes == 0 {
		o.PayloadBytes = 160
	}
	if o.ClockRate == 0 {
		o.ClockRate = 8000
	}
	if o.Ptime <= 0 {
		o.Ptime = 20 * time.Millisecond
	}
	if o.Drain <= 0 {
		o.Drain = 500 * time.Millisecond
	}
	if o.RecvBuffer == 0 {
		o.RecvBuffer = 4 << 20
	}
	if o.SendBuffer == 0 {
		o.SendBuffer = 1 << 20
	}
	switch {
	case len(o.Replay) == 0 && (o.PayloadBytes < minPayload || o.PayloadBytes > maxPayload):
		return optionError("payload size %d outside %d..%d bytes", o.PayloadBytes, minPayload, maxPayload)
	case o.Rate < 0:
		return optionError("negative rate")
	case o.Count < 0 || o.RTCP < 0:
		return optionError("negative count")
	case o.Count == 0 && o.Rate == 0 && len(o.Replay) == 0:
		return optionError("window mode (rate 0) needs a packet count")
	case o.Rekey != nil && o.RekeyInterval <= 0:
		return optionError("re-keying needs a positive interval")
	}
	return nil
}

// maxPayload keeps synthetic packets under a 1500-byte MTU with IPv6, UDP,
// RTP, an MKI and a 16-byte tag.
const maxPayload = 1400

// RunSRTP sends the flows through the system under test and verifies every
// packet that comes out. It returns when every packet has arrived or the
// drain time after the last send has passed, and always within MaxTime;
// cancelling ctx stops it early with a partial report. Every socket and
// goroutine it starts is closed and waited for before it returns.
func RunSRTP(ctx context.Context, flows []Flow, opt SRTPOptions) (*report.Report, error) {
	if len(flows) == 0 {
		return nil, optionError("no flows")
	}
	if err := opt.setDefaults(); err != nil {
		return nil, err
	}
	r, err := newSRTPRun(flows, &opt)
	if err != nil {
		return nil, err
	}
	defer r.close()
	return r.run(ctx)
}

// randomSSRC returns a random non-zero SSRC.
func randomSSRC() uint32 {
	var b [4]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return uint32(time.Now().UnixNano()) | 1
		}
		if v := binary.BigEndian.Uint32(b[:]); v != 0 {
			return v
		}
	}
}

// firstSeq picks a synthetic stream's first sequence number; tests pin it
// to cross a rollover.
var firstSeq = randomUint16

func randomUint16() uint16 {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint16(b[:])
}
