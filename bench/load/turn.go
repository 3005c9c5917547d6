package load

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediaedge/mediaedge/bench/report"
)

// TURNOptions describe a TURN run: N allocations on a TURN server, each
// sending to bench's own echo peer through the relay and receiving the echo
// back, verified packet by packet.
type TURNOptions struct {
	// Target names the server in the report.
	Target string
	// Server is the TURN server's UDP address.
	Server netip.AddrPort
	// Username and Password are long-term credentials. With Secret set
	// instead (TURN REST API, coturn's use-auth-secret), the password is
	// derived: username "<expiry>:<Username>", password
	// base64(HMAC-SHA1(secret, username)).
	Username, Password, Secret, Realm string
	// Allocations is the number of allocations (default 1).
	Allocations int
	// Indications sends Send indications instead of ChannelData.
	Indications bool
	// Direct sends the same payloads from the same number of client
	// sockets straight to the echo peer, with no TURN server: the
	// baseline that a relay hop's cost is measured against. Server and
	// the credentials are not used.
	Direct bool
	// Peer is the echo peer's address; zero means bench starts its own on
	// the loopback address of the server's family.
	Peer netip.AddrPort
	// Count, Rate, Window, Duration, MaxTime, PayloadBytes, Drain and PID
	// mean what they mean in SRTPOptions; Rate is the aggregate over all
	// allocations. MaxTime defaults to 3 x Duration + 10 s plus 10 ms per
	// allocation for the set-up.
	Count        int
	Rate         float64
	Window       int
	Duration     time.Duration
	MaxTime      time.Duration
	PayloadBytes int
	Drain        time.Duration
	PID          int
	// SetupTimeout bounds the set-up of each allocation (default 5 s).
	SetupTimeout time.Duration
	// SetupConcurrency is the number of allocations set up at once
	// (default 64).
	SetupConcurrency int
	// progress gets the progress line (a terminal), nil for silence.
	Progress io.Writer
	// goroutines makes each allocation's socket read by a goroutine of
	// its own, as where there is no epoll loop (tests).
	goroutines bool
	// Status gets a line when the set-up of the allocations starts and one
	// when it is done (stderr, terminal or not: the set-up of many
	// allocations takes seconds); nil for silence.
	Status io.Writer
}

func (o *TURNOptions) setDefaults() error {
	if o.Allocations <= 0 {
		o.Allocations = 1
	}
	if o.MaxTime <= 0 && o.Allocations > 1 {
		d := o.Duration
		if d <= 0 {
			d = 5 * time.Second
		}
		o.MaxTime = 3*d + 10*time.Second + time.Duration(o.Allocations)*10*time.Millisecond
	}
	s := SRTPOptions{Count: o.Count, Rate: o.Rate, Window: o.Window, Duration: o.Duration, MaxTime: o.MaxTime,
		PayloadBytes: o.PayloadBytes, Drain: o.Drain}
	if err := s.setDefaults(); err != nil {
		return err
	}
	o.Window, o.Duration, o.MaxTime, o.PayloadBytes, o.Drain = s.Window, s.Duration, s.MaxTime, s.PayloadBytes, s.Drain
	if o.SetupTimeout <= 0 {
		o.SetupTimeout = 5 * time.Second
	}
	if o.SetupConcurrency <= 0 {
		o.SetupConcurrency = 64
	}
	if o.Direct {
		if o.Indications {
			return optionError("--direct sends no TURN messages: it excludes --indications")
		}
		return nil
	}
	if !o.Server.IsValid() {
		return optionError("no TURN server address")
	}
	if o.Username == "" || o.Password == "" && o.Secret == "" {
		return optionError("TURN needs a username and a password or shared secret")
	}
	return nil
}

// family6 reports whether the run uses IPv6 loopback addresses.
func (o *TURNOptions) family6() bool {
	a := o.Server.Addr()
	if o.Direct && o.Peer.IsValid() {
		a = o.Peer.Addr()
	}
	return a.Is6() && !a.Is4In6()
}

// restCredentials returns TURN REST API credentials valid for ttl.
func restCredentials(secret, user string, ttl time.Duration) (username, password string) {
	username = strconv.FormatInt(time.Now().Add(ttl).Unix(), 10)
	if user != "" {
		username += ":" + user
	}
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// turnRun is one RunTURN.
type turnRun struct {
	opt      *TURNOptions
	epoch    time.Time
	allocs   []*allocation
	loop     *recvLoop // nil: a reader goroutine per allocation
	failedMu sync.Mutex
	failed   []*allocation // set-up failed, socket still open (see discard)
	echo     *echoPeer
	received atomic.Int64
	lat      *report.LatencyRecorder
	latMu    sync.Mutex
	tl       *report.Timeline
	mediaT0  atomic.Int64
	wg       sync.WaitGroup
	unknown  atomic.Int64
	sent     int64
	sendErrs int64
	first    int64
	stopped  string
	closed   bool
}

func (r *turnRun) now() int64 { return int64(time.Since(r.epoch)) }

// RunTURN opens the allocations (with Direct: plain sockets), measures,
// and closes everything it opened (allocations are released with a
// zero-lifetime refresh). An allocation whose set-up fails is counted in
// Report.SetupFailed and the run goes on with the others; it fails only
// when none could be set up.
func RunTURN(ctx context.Context, opt TURNOptions) (*report.Report, error) {
	if err := opt.setDefaults(); err != nil {
		return nil, err
	}
	r := &turnRun{opt: &opt, epoch: time.Now(), lat: report.NewLatencyRecorder(), tl: report.NewTimeline(100 * time.Millisecond)}
	defer r.close()
	ctx, cancel := context.WithTimeout(ctx, opt.MaxTime)
	defer cancel()
	peer := opt.Peer
	if !peer.IsValid() {
		ip := "127.0.0.1:0"
		if opt.family6() {
			ip = "[::1]:0"
		}
		e, err := startEchoPeer(ip)
		if err != nil {
			return nil, err
		}
		r.echo = e
		peer = e.Addr()
	}
	per := opt.Count
	if per == 0 {
		per = max(1, int(opt.Rate*opt.Duration.Seconds())/opt.Allocations)
	}
	rep := &report.Report{Kind: "turn", Target: opt.Target, Started: time.Now()}
	if opt.Direct {
		rep.Mode = report.ModeDirect
		if rep.Target == "" {
			rep.Target = "direct (no server)"
		}
	}
	if opt.Status != nil {
		if opt.Direct {
			fmt.Fprintf(opt.Status, "bench: opening %d socket(s) straight to the echo peer %s (no server)\n", opt.Allocations, peer)
		} else {
			fmt.Fprintf(opt.Status, "bench: setting up %d allocation(s) on %s (each with a permission, a channel and one echo)\n", opt.Allocations, opt.Server)
		}
	}
	if !opt.goroutines {
		if l, err := newRecvLoop(r, opt.Allocations); err == nil {
			r.loop = l
		}
	}
	t0 := time.Now()
	su, err := r.setupAll(ctx, peer, per)
	if err != nil {
		return nil, err
	}
	rep.SetupFailed = su.failed
	if su.failed > 0 {
		rep.Notes = append(rep.Notes, su.note(opt.Allocations))
	}
	if opt.Status != nil {
		fmt.Fprintf(opt.Status, "bench: %d allocation(s) ready in %s (%d failed); sending\n", len(r.allocs),
			time.Since(t0).Round(time.Millisecond), su.failed)
	}
	var before, after procSample
	var mBefore, mAfter machineSample
	var sutErr error
	if opt.PID > 0 {
		before, sutErr = readProc(opt.PID)
	}
	mBefore, mErr := readMachine()
	self := os.Getpid()
	bBefore, bErr := readProc(self)
	r.mediaT0.Store(r.now())
	prog := startProgress(opt.Progress, func() string {
		return fmt.Sprintf("%d allocations, %d round trips back", len(r.allocs), r.received.Load())
	})
	r.send(ctx)
	r.drain(ctx)
	prog.Stop()
	if opt.PID > 0 && sutErr == nil {
		after, sutErr = readProc(opt.PID)
	}
	if mErr == nil {
		mAfter, mErr = readMachine()
	}
	var bAfter procSample
	if bErr == nil {
		bAfter, bErr = readProc(self)
	}
	r.close()

	mode := "channel"
	switch {
	case opt.Direct:
		mode = "direct"
	case opt.Indications:
		mode = "indication"
	}
	d := report.Direction{Name: "round trip (" + mode + ")", Streams: len(r.allocs), PayloadBytes: opt.PayloadBytes,
		OfferedPPS: opt.Rate, Sent: r.sent, SendErrors: r.sendErrs, Unknown: r.unknown.Load()}
	var bytes, last int64
	var jsum float64
	for _, a := range r.allocs {
		j := float64(a.jitter.Duration()) / float64(time.Millisecond)
		jsum += j
		d.JitterMaxMs = max(d.JitterMaxMs, j)
		d.Received += a.tracker.unique
		d.Duplicated += a.tracker.dup
		d.Reordered += a.tracker.reord
		d.BadPayload += a.bad
		bytes += a.bytes
		last = max(last, a.last)
	}
	if len(r.allocs) > 0 {
		d.JitterMs = jsum / float64(len(r.allocs))
	}
	d.Lost = d.Sent - d.Received
	if d.Sent > 0 {
		d.LossPct = 100 * float64(d.Lost) / float64(d.Sent)
	}
	if dur := last - r.first; dur > 0 && d.Received > 0 {
		d.DurationS = float64(dur) / 1e9
		d.PPS = float64(d.Received) / d.DurationS
		d.Mbps = float64(bytes) * 8 / d.DurationS / 1e6
	}
	d.Latency = r.lat.Summary()
	d.Throughput = r.tl.Points()
	rep.Directions = []report.Direction{d}
	if opt.Direct {
		rep.Notes = append(rep.Notes, "direct: latency and jitter are of the round trip client -> echo peer -> client, with no server")
	} else {
		rep.Notes = append(rep.Notes, "latency and jitter are of the round trip client -> relay -> peer -> relay -> client; each round trip is two relayed packets")
	}
	if r.stopped != "" {
		rep.Notes = append(rep.Notes, r.stopped)
	}
	if mErr != nil {
		rep.Notes = append(rep.Notes, mErr.Error())
	} else {
		rep.Machine = machineDelta(mBefore, mAfter, d.Received)
	}
	if bErr == nil {
		rep.Bench = sutDelta(self, bBefore, bAfter, 0)
	}
	if opt.PID > 0 {
		if sutErr != nil {
			rep.Notes = append(rep.Notes, sutErr.Error())
		} else {
			// The server relays every round trip twice.
			rep.SUT = sutDelta(opt.PID, before, after, 2*d.Received)
			if d.Received > 0 {
				rep.SUT.USPerRoundTrip = rep.SUT.CPUSeconds * 1e6 / float64(d.Received)
			}
			rep.Notes = append(rep.Notes, "packets per CPU-second counts both relayed packets of each round trip")
		}
	}
	return rep, nil
}
