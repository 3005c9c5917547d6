package load

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/mediaedge/mediaedge/bench/report"
	"github.com/mediaedge/mediaedge/internal/sockopt"
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
	// Peer is the echo peer's address; zero means bench starts its own on
	// the loopback address of the server's family.
	Peer netip.AddrPort
	// Count, Rate, Window, Duration, MaxTime, PayloadBytes, Drain and PID
	// mean what they mean in SRTPOptions; Rate is the aggregate over all
	// allocations.
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
	// progress gets the progress line (a terminal), nil for silence.
	Progress io.Writer
	// Status gets a line when the set-up of the allocations starts and one
	// when it is done (stderr, terminal or not: the set-up of many
	// allocations takes seconds); nil for silence.
	Status io.Writer
}

func (o *TURNOptions) setDefaults() error {
	s := SRTPOptions{Count: o.Count, Rate: o.Rate, Window: o.Window, Duration: o.Duration, MaxTime: o.MaxTime,
		PayloadBytes: o.PayloadBytes, Drain: o.Drain}
	if err := s.setDefaults(); err != nil {
		return err
	}
	o.Window, o.Duration, o.MaxTime, o.PayloadBytes, o.Drain = s.Window, s.Duration, s.MaxTime, s.PayloadBytes, s.Drain
	if o.Allocations <= 0 {
		o.Allocations = 1
	}
	if o.SetupTimeout <= 0 {
		o.SetupTimeout = 5 * time.Second
	}
	if !o.Server.IsValid() {
		return optionError("no TURN server address")
	}
	if o.Username == "" || o.Password == "" && o.Secret == "" {
		return optionError("TURN needs a username and a password or shared secret")
	}
	return nil
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

// allocation is one TURN client. Its reader goroutine owns the receive
// state; the sender owns the send state.
type allocation struct {
	id     uint32
	conn   *net.UDPConn
	client *turn.Client
	relay  net.PacketConn
	peer   netip.AddrPort
	server netip.AddrPort
	// channel is the bound channel number once ChannelData came back.
	channel atomic.Uint32
	n       int
	sendNs  []atomic.Int64

	// owned by the reader
	tracker *seqTracker
	jitter  report.Jitter
	bad     int64
	bytes   int64
	last    int64
	rx      []byte

	// owned by the sender
	tx  []byte
	msg *stun.Message

	closeOnce sync.Once
}

// turnRun is one RunTURN.
type turnRun struct {
	opt      *TURNOptions
	epoch    time.Time
	allocs   []*allocation
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
}

func (r *turnRun) now() int64 { return int64(time.Since(r.epoch)) }

// RunTURN opens the allocations, measures, and closes everything it
// opened (allocations are released with a zero-lifetime refresh).
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
		if opt.Server.Addr().Is6() && !opt.Server.Addr().Is4In6() {
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
	if opt.Status != nil {
		fmt.Fprintf(opt.Status, "bench: setting up %d allocation(s) on %s (each with a permission, a channel and one echo)\n", opt.Allocations, opt.Server)
	}
	var ready atomic.Int64
	setup := startProgress(opt.Progress, func() string {
		return fmt.Sprintf("%d of %d allocations set up", ready.Load(), opt.Allocations)
	})
	t0 := time.Now()
	for i := 0; i < opt.Allocations; i++ {
		a, err := r.allocate(ctx, uint32(i), peer, per)
		if err != nil {
			setup.Stop()
			return nil, fmt.Errorf("load: allocation %d of %d: %w", i+1, opt.Allocations, err)
		}
		r.allocs = append(r.allocs, a)
		ready.Add(1)
	}
	setup.Stop()
	if opt.Status != nil {
		fmt.Fprintf(opt.Status, "bench: %d allocation(s) ready in %s; sending\n", opt.Allocations, time.Since(t0).Round(time.Millisecond))
	}
	var before, after procSample
	var sutErr error
	if opt.PID > 0 {
		before, sutErr = readProc(opt.PID)
	}
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
	r.close()

	mode := "channel"
	if opt.Indications {
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
	rep.Notes = append(rep.Notes, "latency and jitter are of the round trip client -> relay -> peer -> relay -> client; each round trip is two relayed packets")
	if r.stopped != "" {
		rep.Notes = append(rep.Notes, r.stopped)
	}
	if opt.PID > 0 {
		if sutErr != nil {
			rep.Notes = append(rep.Notes, sutErr.Error())
		} else {
			// The server relays every round trip twice.
			rep.SUT = sutDelta(opt.PID, before, after, 2*d.Received)
			rep.Notes = append(rep.Notes, "packets per CPU-second counts both relayed packets of each round trip")
		}
	}
	return rep, nil
}

// turnErrorHint explains the error codes a server sends without a reason
// phrase (pion/turn sends 401 and 403 bare; pion's client prints them as
// "(error 403: )").
func turnErrorHint(err error, peer netip.AddrPort) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "error 403: )"):
		return fmt.Errorf("%w: Forbidden: the server refused the peer address %s by policy (mediaedge: relay.allowed_peers, which make run's trial configuration sets for loopback; coturn: allow-loopback-peers)", err, peer.Addr())
	case strings.Contains(msg, "error 401: )"):
		return fmt.Errorf("%w: Unauthorized: wrong user, password or realm", err)
	}
	return err
}

// allocate sets up one allocation and waits until an echo comes back (as
// ChannelData unless indications are asked for).
func (r *turnRun) allocate(ctx context.Context, id uint32, peer netip.AddrPort, n int) (*allocation, error) {
	opt := r.opt
	laddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	if opt.Server.Addr().Is6() && !opt.Server.Addr().Is4In6() {
		laddr = &net.UDPAddr{IP: net.IPv6loopback}
	}
	if !opt.Server.Addr().IsLoopback() {
		laddr = nil
	}
	conn, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, err
	}
	// SO_RCVBUFFORCE when privileged: SetReadBuffer is capped by
	// net.core.rmem_max (about 208 KiB by default).
	if rc, err := conn.SyscallConn(); err == nil {
		_ = sockopt.Options{RecvBuffer: 4 << 20, SendBuffer: 1 << 20}.Control("udp", "", rc)
	}
	user, pass := opt.Username, opt.Password
	if opt.Secret != "" {
		user, pass = restCredentials(opt.Secret, opt.Username, 24*time.Hour)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	c, err := turn.NewClient(&turn.ClientConfig{TURNServerAddr: opt.Server.String(), Username: user, Password: pass,
		Realm: opt.Realm, Conn: conn, LoggerFactory: lf, Software: "mediaedge-bench"})
	if err != nil {
		conn.Close()
		return nil, err
	}
	a := &allocation{id: id, conn: conn, client: c, peer: peer, server: opt.Server, n: n,
		sendNs: make([]atomic.Int64, n), tracker: newSeqTracker(n), rx: make([]byte, 65536),
		tx: make([]byte, 0, 2048), msg: &stun.Message{Raw: make([]byte, 0, 2048)}}
	a.jitter.SetClockRate(8000)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.read(a)
	}()
	// From here on the reader runs: closing conn ends it.
	fail := func(err error) (*allocation, error) {
		a.close()
		return nil, turnErrorHint(err, peer)
	}
	sctx, cancel := context.WithTimeout(ctx, opt.SetupTimeout)
	defer cancel()
	if a.relay, err = c.AllocateWithContext(sctx); err != nil {
		return fail(fmt.Errorf("allocate: %w", err))
	}
	peerAddr := net.UDPAddrFromAddrPort(peer)
	if opt.Indications {
		if err := c.CreatePermission(peerAddr); err != nil {
			return fail(fmt.Errorf("create permission for %s: %w", peer, err))
		}
	}
	// Warm up: the echo of a warm-up packet proves the path, and in
	// channel mode its ChannelData header tells the channel number.
	warm := make([]byte, 8)
	binary.BigEndian.PutUint32(warm, warmMagic)
	binary.BigEndian.PutUint32(warm[4:], id)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if opt.Indications {
			_ = a.sendIndication(warm)
		} else if _, err := a.relay.WriteTo(warm, peerAddr); err != nil {
			return fail(fmt.Errorf("first send to %s: %w", peer, err))
		}
		select {
		case <-sctx.Done():
			return fail(fmt.Errorf("no echo through the relay within %v (does the server admit the peer %s?)", opt.SetupTimeout, peer))
		case <-t.C:
		}
		if a.channel.Load() != 0 {
			return a, nil
		}
	}
}

// warmMagic marks warm-up packets ("MEWU").
const warmMagic = 0x4d455755

// close releases the allocation and ends its reader. Idempotent.
func (a *allocation) close() {
	a.closeOnce.Do(func() {
		if a.relay != nil {
			// Refresh with lifetime 0 (deallocation), without waiting
			// for the answer.
			_ = a.relay.Close()
		}
		a.client.Close()
		a.conn.Close()
	})
}

func (r *turnRun) close() {
	for _, a := range r.allocs {
		a.close()
	}
	if r.echo != nil {
		r.echo.Close()
		r.echo = nil
	}
	r.wg.Wait()
}

// read handles everything arriving on an allocation's socket: ChannelData
// and Data indications carry echoes; other STUN messages are answers for
// the pion client.
func (r *turnRun) read(a *allocation) {
	from := &net.UDPAddr{}
	for {
		n, addr, err := a.conn.ReadFromUDPAddrPort(a.rx)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		b := a.rx[:n]
		now := r.now()
		switch {
		case n >= 4 && b[0]&0xc0 == 0x40: // ChannelData (0x4000-0x7fff)
			ch := binary.BigEndian.Uint16(b)
			l := int(binary.BigEndian.Uint16(b[2:]))
			if l > n-4 {
				r.unknown.Add(1)
				continue
			}
			a.channel.CompareAndSwap(0, uint32(ch))
			r.echoed(a, b[4:4+l], now)
		case stun.IsMessage(b) && binary.BigEndian.Uint16(b) == dataIndication:
			data, err := decodeData(b)
			if err != nil {
				r.unknown.Add(1)
				continue
			}
			if r.opt.Indications {
				a.channel.CompareAndSwap(0, 1)
			}
			r.echoed(a, data, now)
		default:
			from.IP, from.Port = addr.Addr().AsSlice(), int(addr.Port())
			_, _ = a.client.HandleInbound(b, from)
		}
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
				p.sleep(min(time.Duration(wait), 50*time.Millisecond))
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
		if opt.Indications {
			err = a.sendIndication(payload)
		} else {
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
