package load

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/srtp/v3"

	"github.com/mediaedge/mediaedge/bench/capture"
	"github.com/mediaedge/mediaedge/bench/report"
	"github.com/mediaedge/mediaedge/bench/srtpcheck"
	"github.com/mediaedge/mediaedge/internal/sockopt"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// benchSocket is one local UDP socket of a run. Its receiver goroutine (if
// any) owns the receive side; senders share the send side through
// sendMu (one WriteBatch at a time).
type benchSocket struct {
	addr netip.AddrPort
	uc   *net.UDPConn
	bc   *udpbatch.Conn
	// set up before the run, read-only afterwards
	bySSRC map[uint32]*stream
	recv   bool
	sendMu sync.Mutex
}

// stream is one flow's state. Fields are grouped by owner.
type stream struct {
	// set in newSRTPRun, never changed
	id        uint32
	dir       *direction
	flow      *Flow
	ssrc      uint32
	seq0      uint16
	ts0       uint32
	tsStep    uint32
	n         int
	replay    *capture.RTPStream
	src, rsrc *benchSocket // send sockets for RTP and RTCP
	target    netip.AddrPort
	rtarget   netip.AddrPort
	// sendNs[k] is the send time of packet k (ns since the run's epoch),
	// written by the sender, read by the receiver.
	sendNs []atomic.Int64

	// owned by the sender of dir
	tx, txRTCP *srtp.Context

	// nextRx is a key the output will switch to (set by the re-key loop,
	// taken by the receiver); rekeys counts switches made.
	nextRx atomic.Pointer[srtpcheck.Key]
	rekeys atomic.Int64

	// owned by the receiver of the stream's Recv socket
	rx, prevRx *srtp.Context
	pending    []pendingPkt
	tracker    *seqTracker
	jitter     report.Jitter
	highestExt int64
	failedAuth int64
	badPayload int64
	bytes      int64
	lastRecv   int64

	// owned by the receiver of the RTCP Recv socket
	rxRTCP  *srtp.Context
	rtcpOK  atomic.Int64
	rtcpBad atomic.Int64
}

// direction groups the streams that share a sender.
type direction struct {
	name    string
	streams []*stream
	total   int // packets to send, all streams
	// written by the sender, read after it ends
	sent       int64
	sendErrors int64
	firstSend  int64
	lastSend   int64
	stopped    string // why sending stopped early, if it did
	// received counts unique packets; receivers add, the sender reads it
	// in window mode and the drain loop waits on it.
	received atomic.Int64
	// per-receiver statistics, merged at the end
	lat      *report.LatencyRecorder
	timeline *report.Timeline
	unknown  atomic.Int64
}

type srtpRun struct {
	opt     *SRTPOptions
	epoch   time.Time
	dirs    []*direction
	streams []*stream
	socks   map[netip.AddrPort]*benchSocket
	order   []*benchSocket
	recvs   []*receiver
	wg      sync.WaitGroup
	// mediaStart is when the media phase began (ns since epoch), the
	// origin of the throughput timeline.
	mediaStart atomic.Int64
	closed     bool
}

func (r *srtpRun) now() int64 { return int64(time.Since(r.epoch)) }

// socket binds addr (or an ephemeral port when addr is empty) or returns
// the socket already bound there.
func (r *srtpRun) socket(addr string, family netip.Addr) (*benchSocket, error) {
	if addr != "" {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, optionError("bad local address %q: %v", addr, err)
		}
		if s := r.socks[ap]; s != nil && ap.Port() != 0 {
			return s, nil
		}
	} else {
		addr = "127.0.0.1:0"
		if family.Is6() && !family.Is4In6() {
			addr = "[::1]:0"
		}
	}
	so := sockopt.Options{RecvBuffer: r.opt.RecvBuffer, SendBuffer: r.opt.SendBuffer}
	pc, err := so.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return nil, fmt.Errorf("load: binding %s: %w", addr, err)
	}
	uc := pc.(*net.UDPConn)
	la := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	la = netip.AddrPortFrom(la.Addr().Unmap(), la.Port())
	s := &benchSocket{addr: la, uc: uc, bc: udpbatch.New(uc, batchSize), bySSRC: map[uint32]*stream{}}
	r.socks[la] = s
	r.order = append(r.order, s)
	return s, nil
}

const batchSize = 64

func newSRTPRun(flows []Flow, opt *SRTPOptions) (*srtpRun, error) {
	r := &srtpRun{opt: opt, epoch: time.Now(), socks: map[netip.AddrPort]*benchSocket{}}
	ok := false
	defer func() {
		if !ok {
			r.close()
		}
	}()
	so := sockopt.Options{RecvBuffer: opt.RecvBuffer, SendBuffer: opt.SendBuffer}
	for _, uc := range opt.Conns {
		// The caller bound these with default buffers (about 208 KiB):
		// a burst of 1200-byte packets overflows that at bench's own
		// socket, which would be charged to the system under test.
		if rc, err := uc.SyscallConn(); err == nil {
			_ = so.Control("udp", "", rc)
		}
		la := uc.LocalAddr().(*net.UDPAddr).AddrPort()
		la = netip.AddrPortFrom(la.Addr().Unmap(), la.Port())
		s := &benchSocket{addr: la, uc: uc, bc: udpbatch.New(uc, batchSize), bySSRC: map[uint32]*stream{}}
		r.socks[la] = s
		r.order = append(r.order, s)
	}
	byName := map[string]*direction{}
	ephemeral := map[string]*benchSocket{}
	for i := range flows {
		f := &flows[i]
		d := byName[f.Direction]
		if d == nil {
			d = &direction{name: f.Direction, lat: report.NewLatencyRecorder(), timeline: report.NewTimeline(100 * time.Millisecond)}
			byName[f.Direction] = d
			r.dirs = append(r.dirs, d)
		}
		if !f.Target.IsValid() || f.Recv == "" {
			return nil, optionError("flow %d (%s) needs a target and a receive address", i, f.Direction)
		}
		st := &stream{id: uint32(i), dir: d, flow: f, target: f.Target, rtarget: f.RTCPTarget, highestExt: -1}
		var err error
		if f.Src == "" {
			if st.src = ephemeral[f.Direction]; st.src == nil {
				if st.src, err = r.socket("", f.Target.Addr()); err != nil {
					return nil, err
				}
				ephemeral[f.Direction] = st.src
			}
		} else if st.src, err = r.socket(f.Src, f.Target.Addr()); err != nil {
			return nil, err
		}
		recv, err := r.socket(f.Recv, f.Target.Addr())
		if err != nil {
			return nil, err
		}
		recv.recv = true
		st.rsrc, st.rxRTCP = st.src, nil
		rrecv := recv
		if f.RTCPTarget.IsValid() {
			if f.RTCPSrc != "" {
				if st.rsrc, err = r.socket(f.RTCPSrc, f.Target.Addr()); err != nil {
					return nil, err
				}
			}
			if f.RTCPRecv != "" {
				if rrecv, err = r.socket(f.RTCPRecv, f.Target.Addr()); err != nil {
					return nil, err
				}
				rrecv.recv = true
			}
		} else {
			st.rtarget = f.Target
		}
		if st.tx, err = f.TxKey.Context(); err != nil {
			return nil, fmt.Errorf("flow %d tx: %w", i, err)
		}
		if st.txRTCP, err = f.TxKey.Context(); err != nil {
			return nil, err
		}
		if st.rx, err = f.RxKey.Context(); err != nil {
			return nil, fmt.Errorf("flow %d rx: %w", i, err)
		}
		if st.rxRTCP, err = f.RxKey.Context(); err != nil {
			return nil, err
		}
		di := len(d.streams)
		st.seq0 = firstSeq()
		st.ts0 = randomSSRC()
		st.tsStep = uint32(opt.Ptime.Seconds() * float64(opt.ClockRate))
		st.jitter.SetClockRate(opt.ClockRate)
		ssrc := f.SSRC
		if len(opt.Replay) > 0 {
			st.replay = opt.Replay[di%len(opt.Replay)]
			st.n = len(st.replay.Packets)
			if opt.Count > 0 {
				st.n = min(st.n, opt.Count)
			}
			if ssrc == 0 {
				ssrc = st.replay.SSRC
			}
			st.seq0 = st.replay.Packets[0].Header.SequenceNumber
			st.jitter.SetClockRate(capture.ClockRate(st.replay.PayloadTypes[0]))
		}
		if ssrc == 0 {
			ssrc = randomSSRC()
		}
		// SSRCs demultiplex the receive sockets: make them unique there.
		for recv.bySSRC[ssrc] != nil || rrecv.bySSRC[ssrc] != nil || ssrc == 0 {
			ssrc = ssrc*0x01000193 + 1
		}
		st.ssrc = ssrc
		recv.bySSRC[ssrc] = st
		rrecv.bySSRC[ssrc] = st
		d.streams = append(d.streams, st)
		r.streams = append(r.streams, st)
	}
	for _, d := range r.dirs {
		if len(opt.Replay) == 0 {
			per := opt.Count
			if per == 0 {
				per = max(1, int(opt.Rate*opt.Duration.Seconds())/len(d.streams))
			}
			for _, st := range d.streams {
				st.n = per
			}
		}
		for _, st := range d.streams {
			st.sendNs = make([]atomic.Int64, st.n)
			st.tracker = newSeqTracker(st.n)
			d.total += st.n
		}
	}
	ok = true
	return r, nil
}

// close closes every socket and waits for the receivers. Idempotent.
func (r *srtpRun) close() {
	if r.closed {
		return
	}
	r.closed = true
	for _, s := range r.order {
		s.uc.Close()
	}
	r.wg.Wait()
}

func (r *srtpRun) run(ctx context.Context) (*report.Report, error) {
	rep := &report.Report{Kind: "srtp", Target: r.opt.Target, Started: time.Now()}
	deadline := time.Now().Add(r.opt.MaxTime)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	for _, s := range r.order {
		if !s.recv {
			continue
		}
		rc := newReceiver(r, s)
		r.recvs = append(r.recvs, rc)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			rc.run()
		}()
	}
	if r.opt.RTCP > 0 {
		r.sendRTCP(ctx)
	}

	var before procSample
	var sutErr error
	if r.opt.PID > 0 {
		before, sutErr = readProc(r.opt.PID)
	}
	r.mediaStart.Store(r.now())
	stopProgress := r.startProgress()
	stopRekey := r.startRekey(ctx, rep)
	var swg sync.WaitGroup
	for _, d := range r.dirs {
		swg.Add(1)
		go func() {
			defer swg.Done()
			newSender(r, d).run(ctx)
		}()
	}
	swg.Wait()
	r.drain(ctx)
	stopRekey()
	stopProgress()
	var after procSample
	if r.opt.PID > 0 && sutErr == nil {
		after, sutErr = readProc(r.opt.PID)
	}
	r.close()
	for _, rc := range r.recvs {
		rc.settlePending()
	}

	for _, d := range r.dirs {
		rep.Directions = append(rep.Directions, r.directionResult(d))
		if d.stopped != "" {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: %s", d.name, d.stopped))
		}
	}
	if r.opt.PID > 0 {
		if sutErr != nil {
			rep.Notes = append(rep.Notes, sutErr.Error())
		} else {
			rep.SUT = sutDelta(r.opt.PID, before, after, rep.Received())
		}
	}
	if r.opt.WritePcap != nil {
		if err := r.writePcap(); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// drain waits until every sent packet has arrived, or Drain has passed
// since the last one arrived, or ctx ends.
func (r *srtpRun) drain(ctx context.Context) {
	var last int64 = -1
	quiet := time.Now()
	for ctx.Err() == nil {
		var got, sent int64
		for _, d := range r.dirs {
			got += d.received.Load()
			sent += d.sent
		}
		if got >= sent {
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

// directionResult gathers a direction's figures once every goroutine has
// ended.
func (r *srtpRun) directionResult(d *direction) report.Direction {
	out := report.Direction{Name: d.name, Streams: len(d.streams), OfferedPPS: r.opt.Rate, Sent: d.sent, SendErrors: d.sendErrors}
	if len(r.opt.Replay) == 0 {
		out.PayloadBytes = r.opt.PayloadBytes
	}
	var bytes, lastRecv int64
	var jsum float64
	for _, st := range d.streams {
		out.Received += st.tracker.unique
		out.Duplicated += st.tracker.dup
		out.Reordered += st.tracker.reord
		out.FailedAuth += st.failedAuth + int64(len(st.pending))
		out.ReKeys += st.rekeys.Load()
		out.BadPayload += st.badPayload
		bytes += st.bytes
		lastRecv = max(lastRecv, st.lastRecv)
		j := float64(st.jitter.Duration()) / float64(time.Millisecond)
		jsum += j
		out.JitterMaxMs = max(out.JitterMaxMs, j)
	}
	out.JitterMs = jsum / float64(len(d.streams))
	out.Unknown = d.unknown.Load()
	out.Lost = out.Sent - out.Received
	if out.Sent > 0 {
		out.LossPct = 100 * float64(out.Lost) / float64(out.Sent)
	}
	if dur := lastRecv - d.firstSend; out.Received > 0 && dur > 0 {
		out.DurationS = float64(dur) / 1e9
		out.PPS = float64(out.Received) / out.DurationS
		out.Mbps = float64(bytes) * 8 / out.DurationS / 1e6
	}
	out.Latency = d.lat.Summary()
	out.Throughput = d.timeline.Points()
	if r.opt.RTCP > 0 {
		rt := &report.RTCPResult{Sent: int64(r.opt.RTCP * len(d.streams))}
		for _, st := range d.streams {
			rt.Received += st.rtcpOK.Load()
			rt.Failed += st.rtcpBad.Load()
		}
		out.RTCP = rt
	}
	return out
}

// writePcap merges what the receivers recorded, in arrival order.
func (r *srtpRun) writePcap() error {
	var all []recorded
	for _, rc := range r.recvs {
		all = append(all, rc.rec...)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].at < all[j].at })
	w, err := capture.NewPcapWriter(r.opt.WritePcap)
	if err != nil {
		return err
	}
	for _, p := range all {
		if err := w.Write(r.epoch.Add(time.Duration(p.at)), p.src, p.dst, p.data); err != nil {
			return err
		}
	}
	return nil
}

// startRekey runs the re-key loop, if one was asked for, until the
// returned stop function is called. Its errors become report notes (the
// notes are written only after stop returns).
func (r *srtpRun) startRekey(ctx context.Context, rep *report.Report) (stop func()) {
	if r.opt.Rekey == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var errs []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(r.opt.RekeyInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for i, st := range r.streams {
				if st.nextRx.Load() != nil {
					// The last key announced was not seen in use yet:
					// switching again now would leave the packets
					// protected with it (in flight, or queued on a
					// busy machine) with a key bench no longer holds.
					continue
				}
				k, ok, err := r.opt.Rekey(ctx, i)
				if err != nil {
					if len(errs) < 5 {
						errs = append(errs, fmt.Sprintf("re-keying flow %d: %v", i, err))
					}
					continue
				}
				if ok {
					st.nextRx.Store(&k)
				}
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		rep.Notes = append(rep.Notes, errs...)
	}
}
