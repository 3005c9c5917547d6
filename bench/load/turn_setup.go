package load

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
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

// allocation is one TURN client (with Direct: one plain socket). Its
// reader goroutine owns the receive state; the sender owns the send
// state.
type allocation struct {
	id     uint32
	conn   *net.UDPConn
	client *turn.Client // nil with Direct
	relay  net.PacketConn
	peer   netip.AddrPort
	server netip.AddrPort
	// channel is the bound channel number once ChannelData came back
	// (1 once the first echo came back, for indications and Direct).
	channel atomic.Uint32
	// ready is closed when channel is set.
	ready chan struct{}
	// fd is the socket's descriptor when a recvLoop serves it.
	fd     int
	n      int
	sendNs []atomic.Int64

	// owned by the reader
	tracker *seqTracker
	jitter  report.Jitter
	bad     int64
	bytes   int64
	last    int64

	// owned by the sender
	tx  []byte
	msg *stun.Message

	closeOnce sync.Once
}

// rxBuffer is a receive buffer: the largest payload (maxPayload) with a
// Data indication's framing fits, and so does any STUN answer a server
// sends. The recvLoop has a few for all allocations; a reader goroutine
// (no recvLoop) one each.
const rxBuffer = 2048

// setReady records the first echo; it reports whether this call did.
func (a *allocation) setReady(ch uint32) bool {
	if a.channel.CompareAndSwap(0, ch) {
		close(a.ready)
		return true
	}
	return false
}

// setupResult counts the set-up of the allocations.
type setupResult struct {
	failed int
	// errs counts failures by message, for the report's note; from holds
	// the client address of the first failure of each message, to look
	// for in a capture or the server's log.
	errs map[string]int
	from map[string]netip.AddrPort
}

// setupError is a failed set-up with the client address it used.
type setupError struct {
	local netip.AddrPort
	err   error
}

func (e *setupError) Error() string { return e.err.Error() }
func (e *setupError) Unwrap() error { return e.err }

// note describes the failures for the report.
func (s *setupResult) note(asked int) string {
	type kv struct {
		msg string
		n   int
	}
	var all []kv
	for m, n := range s.errs {
		all = append(all, kv{m, n})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n || all[i].n == all[j].n && all[i].msg < all[j].msg })
	var b strings.Builder
	fmt.Fprintf(&b, "set-up failed for %d of %d allocations:", s.failed, asked)
	for i, e := range all {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d other error(s)", len(all)-3)
			break
		}
		fmt.Fprintf(&b, " %dx %s", e.n, e.msg)
		if a := s.from[e.msg]; a.IsValid() {
			fmt.Fprintf(&b, " (the first from %s)", a)
		}
		b.WriteString(";")
	}
	return strings.TrimSuffix(b.String(), ";")
}

// setupAttempts is how often one allocation is tried before it counts as
// failed: a transaction lost under a burst of set-ups is not the server
// refusing.
const setupAttempts = 2

// abortAfter is the number of failed set-ups, with none succeeded, after
// which the set-up stops: the server refuses them all (wrong password,
// peer denied) and waiting for thousands of timeouts says nothing more.
const abortAfter = 16

// setupAll sets up opt.Allocations allocations, SetupConcurrency at a
// time, into r.allocs (in id order). It fails only when none could be set
// up.
func (r *turnRun) setupAll(ctx context.Context, peer netip.AddrPort, per int) (setupResult, error) {
	opt := r.opt
	res := setupResult{errs: map[string]int{}, from: map[string]netip.AddrPort{}}
	var (
		next, ok atomic.Int64
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slots := make([]*allocation, opt.Allocations)
	prog := startProgress(opt.Progress, func() string {
		return fmt.Sprintf("%d of %d allocations set up", ok.Load(), opt.Allocations)
	})
	for w := 0; w < min(opt.SetupConcurrency, opt.Allocations); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= opt.Allocations {
					return
				}
				a, err := r.setupOne(sctx, uint32(i), peer, per)
				if err == nil {
					slots[i] = a
					ok.Add(1)
					continue
				}
				if sctx.Err() != nil && ctx.Err() == nil {
					return // aborted below: not this allocation's fault
				}
				mu.Lock()
				res.failed++
				res.errs[err.Error()]++
				var se *setupError
				if errors.As(err, &se) && !res.from[err.Error()].IsValid() {
					res.from[err.Error()] = se.local
				}
				if firstErr == nil {
					firstErr = err
				}
				if res.failed >= abortAfter && ok.Load() == 0 {
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	prog.Stop()
	for _, a := range slots {
		if a != nil {
			r.allocs = append(r.allocs, a)
		}
	}
	switch {
	case len(r.allocs) == 0 && firstErr != nil:
		return res, fmt.Errorf("load: no allocation could be set up (%d tried): %w", res.failed, firstErr)
	case len(r.allocs) == 0:
		return res, fmt.Errorf("load: no allocation set up: %w", context.Cause(ctx))
	case ctx.Err() != nil:
		return res, fmt.Errorf("load: set-up of %d allocations stopped after %d: %w", opt.Allocations, len(r.allocs), context.Cause(ctx))
	}
	// Set-ups never tried because the run was aborted count as failed.
	res.failed = opt.Allocations - len(r.allocs)
	return res, nil
}

// setupOne sets up allocation id, retrying what may be transient.
func (r *turnRun) setupOne(ctx context.Context, id uint32, peer netip.AddrPort, per int) (*allocation, error) {
	var err error
	for attempt := 0; attempt < setupAttempts; attempt++ {
		var a *allocation
		if r.opt.Direct {
			a, err = r.openDirect(ctx, id, peer, per)
		} else {
			a, err = r.allocate(ctx, id, peer, per)
		}
		if err == nil {
			return a, nil
		}
		if ctx.Err() != nil || errors.Is(err, errRefused) {
			break
		}
	}
	return nil, err
}

// errRefused marks a set-up the server refused for good (401, 403): not
// worth a retry.
var errRefused = errors.New("refused by the server")

// turnErrorHint explains the error codes a server sends without a reason
// phrase (pion/turn sends 401 and 403 bare; pion's client prints them as
// "(error 403: )").
func turnErrorHint(err error, peer netip.AddrPort) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "error 403"):
		return fmt.Errorf("%w: %w: Forbidden: the server refused the peer address %s by policy (mediaedge: relay.allowed_peers, which make run's trial configuration sets for loopback; coturn: allow-loopback-peers)", err, errRefused, peer.Addr())
	case strings.Contains(msg, "error 401"):
		return fmt.Errorf("%w: %w: Unauthorized: wrong user, password or realm", err, errRefused)
	case strings.HasPrefix(msg, "allocate: ") && strings.Contains(msg, "deadline exceeded"):
		// mediaedge answers at most relay.limits.challenges_per_source
		// requests without credentials per second and source address
		// (200 by default) and drops the rest unanswered; every bench
		// client has the same address.
		return fmt.Errorf("%w (no answer to Allocate: does the server drop requests without credentials beyond a rate per source address? mediaedge: relay.limits.challenges_per_source)", err)
	}
	return err
}

// listen opens a client socket on the loopback address of the run's
// family (any address for a server elsewhere).
func (r *turnRun) listen() (*net.UDPConn, error) {
	opt := r.opt
	laddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	if opt.family6() {
		laddr = &net.UDPAddr{IP: net.IPv6loopback}
	}
	if !opt.Direct && !opt.Server.Addr().IsLoopback() || opt.Direct && opt.Peer.IsValid() && !opt.Peer.Addr().IsLoopback() {
		laddr = nil
	}
	conn, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("opening a client socket: %w", err)
	}
	// SO_RCVBUFFORCE when privileged: SetReadBuffer is capped by
	// net.core.rmem_max (about 208 KiB by default). The buffer is only
	// charged while datagrams wait in it.
	if rc, err := conn.SyscallConn(); err == nil {
		_ = sockopt.Options{RecvBuffer: 1 << 20, SendBuffer: 1 << 20}.Control("udp", "", rc)
	}
	return conn, nil
}

func (r *turnRun) newAllocation(id uint32, conn *net.UDPConn, peer netip.AddrPort, n int) *allocation {
	a := &allocation{id: id, conn: conn, peer: peer, server: r.opt.Server, n: n, ready: make(chan struct{}),
		sendNs: make([]atomic.Int64, n), tracker: newSeqTracker(n), tx: make([]byte, 0, rxBuffer)}
	a.jitter.SetClockRate(8000)
	return a
}

// startReader has a's socket read: by the recvLoop, or by a goroutine of
// its own that closing a ends.
func (r *turnRun) startReader(a *allocation) error {
	if r.loop != nil {
		return r.loop.add(a)
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.read(a)
	}()
	return nil
}

// discard releases an allocation whose set-up failed. Served by the
// recvLoop, its socket stays open until the run ends (see remove).
func (r *turnRun) discard(a *allocation) {
	if r.loop == nil {
		a.close()
		return
	}
	r.loop.remove(a)
	r.failedMu.Lock()
	r.failed = append(r.failed, a)
	r.failedMu.Unlock()
}

// openDirect opens a plain socket and waits for the echo peer to answer
// on it.
func (r *turnRun) openDirect(ctx context.Context, id uint32, peer netip.AddrPort, n int) (*allocation, error) {
	conn, err := r.listen()
	if err != nil {
		return nil, err
	}
	a := r.newAllocation(id, conn, peer, n)
	if err := r.startReader(a); err != nil {
		conn.Close()
		return nil, err
	}
	err = r.warmUp(ctx, a, func(b []byte) error {
		_, err := a.conn.WriteToUDPAddrPort(b, peer)
		return err
	})
	if err != nil {
		r.discard(a)
		return nil, err
	}
	return a, nil
}

// allocate sets up one allocation and waits until an echo comes back (as
// ChannelData unless indications are asked for).
func (r *turnRun) allocate(ctx context.Context, id uint32, peer netip.AddrPort, n int) (*allocation, error) {
	opt := r.opt
	conn, err := r.listen()
	if err != nil {
		return nil, err
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
		return nil, fmt.Errorf("turn client: %w", err)
	}
	a := r.newAllocation(id, conn, peer, n)
	a.client, a.msg = c, &stun.Message{Raw: make([]byte, 0, rxBuffer)}
	if err := r.startReader(a); err != nil {
		c.Close()
		conn.Close()
		return nil, err
	}
	fail := func(err error) (*allocation, error) {
		r.discard(a)
		return nil, &setupError{local: conn.LocalAddr().(*net.UDPAddr).AddrPort(), err: turnErrorHint(err, peer)}
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
	// The echo of a warm-up packet proves the path, and in channel mode
	// its ChannelData header tells the channel number. pion's first
	// WriteTo creates the permission and binds the channel in the
	// background; until the binding is done the data goes as Send
	// indications and comes back as Data indications, which do not count.
	err = r.warmUp(sctx, a, func(b []byte) error {
		if opt.Indications {
			_ = a.sendIndication(b)
			return nil
		}
		if _, err := a.relay.WriteTo(b, peerAddr); err != nil {
			return fmt.Errorf("first send to %s: %w", peer, err)
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	return a, nil
}

// warmUp sends a warm-up packet every 50 ms until the reader sees one
// come back the way the data will.
func (r *turnRun) warmUp(ctx context.Context, a *allocation, send func([]byte) error) error {
	warm := make([]byte, 8)
	binary.BigEndian.PutUint32(warm, warmMagic)
	binary.BigEndian.PutUint32(warm[4:], a.id)
	sctx, cancel := context.WithTimeout(ctx, r.opt.SetupTimeout)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if err := send(warm); err != nil {
			return err
		}
		select {
		case <-a.ready:
			return nil
		case <-sctx.Done():
			if r.opt.Direct {
				return fmt.Errorf("no echo from %s within %v", a.peer, r.opt.SetupTimeout)
			}
			return fmt.Errorf("no echo through the relay within %v (does the server admit the peer %s?)", r.opt.SetupTimeout, a.peer)
		case <-t.C:
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
		if a.client != nil {
			a.client.Close()
		}
		a.conn.Close()
	})
}

// closePace allocations are released, then closePause passes (4,000 per
// second): a burst of thousands of Refresh(0) overflows a busy server's
// listener buffer, and a lost deallocation holds a relay port until it
// expires, which the next run with thousands of allocations would miss.
const (
	closePace  = 100
	closePause = 25 * time.Millisecond
)

// close stops the recvLoop and releases everything the run opened.
// Idempotent; the run's goroutine only.
func (r *turnRun) close() {
	if r.closed {
		return
	}
	r.closed = true
	if r.loop != nil {
		r.loop.stop()
	}
	for _, a := range r.failed {
		a.close()
	}
	r.failed = nil
	for i, a := range r.allocs {
		a.close()
		if a.relay != nil && i%closePace == closePace-1 {
			time.Sleep(closePause)
		}
	}
	if r.echo != nil {
		r.echo.Close()
		r.echo = nil
	}
	r.wg.Wait()
}
