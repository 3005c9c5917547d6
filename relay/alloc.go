package relay

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// alloc is the relay's view of one allocation: its relay socket, the
// channel and permission snapshot the data path reads, and the counters of
// its accounting line. pion owns the allocation itself (its timers, its
// permissions); the relay mirrors what the data path needs through pion's
// EventHandler. An alloc is created by the relay address generator (pion's
// AllocatePacketConn/AllocateListener) and ends when pion closes its relay
// socket.
type alloc struct {
	// set at creation, never changed
	id        uint64
	srv       *Server
	user      string
	relayAddr netip.AddrPort // bound
	advAddr   netip.AddrPort // advertised (XOR-RELAYED-ADDRESS)
	proto     string         // relay protocol: "udp" or "tcp"
	v6        bool
	created   time.Time
	slot      int        // worker slot of the relay socket (UDP), -1 for TCP
	usr       *userState // per-user quota and buckets
	udp       *relayConn // UDP relay socket, nil for TCP
	tcp       *tcpRelay  // TCP relay listener, nil for UDP

	// route is where peer->client datagrams go; nil until pion reports the
	// allocation created. Read lock-free by the worker.
	route atomic.Pointer[route]
	// table is the channel and permission snapshot; replaced, never
	// modified, under mu.
	table atomic.Pointer[chanTable]
	// buckets cap each direction; nil when there is no cap.
	buckets [numDirs]atomic.Pointer[tokenBucket]

	// read hint of the relay socket, owned by its worker: how many
	// datagrams the next recvmmsg asks for (see worker.serveRelay)
	rhint uint8

	// counters, each direction
	packets [numDirs]atomic.Uint64
	bytes   [numDirs]atomic.Uint64

	// endReason says why the allocation ended when the relay knows better
	// than "expired" (set before pion deletes it).
	endReason atomic.Pointer[string]

	// mu guards the following and serialises table rebuilds.
	mu    sync.Mutex
	chans []chanEntry // few per allocation: a slice costs less than a map
	perms []netip.Addr
	five  fiveKey // set by OnAllocationCreated
	ended bool
}

// route is the client side of an allocation.
type route struct {
	client    netip.AddrPort
	listener  netip.AddrPort
	transport string    // udp, tcp, tls
	group     *udpGroup // UDP listener whose socket reaches the client; nil for TCP/TLS
}

// fiveKey identifies an allocation the way pion does: client address and
// the listener address it reached.
type fiveKey struct {
	client, listener netip.AddrPort
	tcp              bool
}

// chanEntry is one channel binding.
type chanEntry struct {
	num    uint16
	peer   netip.AddrPort
	denied bool // refused by the peer policy since a reload
}

// chanTable is an immutable snapshot of an allocation's channels and
// permissions. Small tables (the usual case: a handful of peers) are
// scanned; large ones also carry maps.
type chanTable struct {
	chans  []chanEntry
	perms  []netip.Addr
	denied map[netip.Addr]struct{} // permitted peers the policy now refuses
	byNum  map[uint16]int
	byPeer map[netip.AddrPort]int
	permOK map[netip.Addr]struct{}
}

const tableScanMax = 8

var emptyTable = &chanTable{}

func (t *chanTable) byNumber(n uint16) *chanEntry {
	if t.byNum != nil {
		if i, ok := t.byNum[n]; ok {
			return &t.chans[i]
		}
		return nil
	}
	for i := range t.chans {
		if t.chans[i].num == n {
			return &t.chans[i]
		}
	}
	return nil
}

func (t *chanTable) byPeerAddr(p netip.AddrPort) *chanEntry {
	if t.byPeer != nil {
		if i, ok := t.byPeer[p]; ok {
			return &t.chans[i]
		}
		return nil
	}
	for i := range t.chans {
		if t.chans[i].peer == p {
			return &t.chans[i]
		}
	}
	return nil
}

// permitted reports whether peer IP a has a permission (and, second
// result, whether the policy now refuses it).
func (t *chanTable) permitted(a netip.Addr) (ok, denied bool) {
	if t.permOK != nil {
		_, ok = t.permOK[a]
	} else {
		for _, p := range t.perms {
			if p == a {
				ok = true
				break
			}
		}
	}
	if ok && t.denied != nil {
		_, denied = t.denied[a]
	}
	return ok, denied
}

// rebuildLocked publishes a new snapshot from a.chans and a.perms, judging
// every peer with the current policy. The caller holds a.mu.
func (a *alloc) rebuildLocked() {
	pol := a.srv.policy.Load()
	t := &chanTable{
		chans: make([]chanEntry, 0, len(a.chans)),
		perms: make([]netip.Addr, 0, len(a.perms)),
	}
	for _, c := range a.chans {
		t.chans = append(t.chans, chanEntry{num: c.num, peer: c.peer, denied: pol.Peer(c.peer.Addr()) != reasonNone})
	}
	for _, p := range a.perms {
		t.perms = append(t.perms, p)
		if pol.Peer(p) != reasonNone {
			if t.denied == nil {
				t.denied = map[netip.Addr]struct{}{}
			}
			t.denied[p] = struct{}{}
		}
	}
	if len(t.chans) > tableScanMax {
		t.byNum = make(map[uint16]int, len(t.chans))
		t.byPeer = make(map[netip.AddrPort]int, len(t.chans))
		for i, e := range t.chans {
			t.byNum[e.num] = i
			t.byPeer[e.peer] = i
		}
	}
	if len(t.perms) > tableScanMax {
		t.permOK = make(map[netip.Addr]struct{}, len(t.perms))
		for _, p := range t.perms {
			t.permOK[p] = struct{}{}
		}
	}
	a.table.Store(t)
}

// allow charges n bytes in direction d to the allocation's and the user's
// buckets. now is nanoseconds on the relay's monotonic clock.
func (a *alloc) allow(d int, n int, now int64) bool {
	if b := a.buckets[d].Load(); b != nil && !b.take(n, now) {
		return false
	}
	if u := a.usr; u != nil {
		if b := u.buckets[d].Load(); b != nil && !b.take(n, now) {
			return false
		}
	}
	return true
}

// capped reports whether direction d has a bandwidth cap.
func (a *alloc) capped(d int) bool {
	return a.buckets[d].Load() != nil || (a.usr != nil && a.usr.buckets[d].Load() != nil)
}

// throttle charges n bytes of a stream in direction d to the allocation's
// and the user's buckets, even beyond their tokens, and returns how long
// the stream must wait before sending them (0: at once).
func (a *alloc) throttle(d int, n int, now int64) time.Duration {
	var w time.Duration
	if b := a.buckets[d].Load(); b != nil {
		w = b.charge(n, now)
	}
	if u := a.usr; u != nil {
		if b := u.buckets[d].Load(); b != nil {
			w = max(w, b.charge(n, now))
		}
	}
	return w
}

// count adds to the allocation's counters.
func (a *alloc) count(d int, n int) {
	a.packets[d].Add(1)
	a.bytes[d].Add(uint64(n))
}

// userState is what the relay keeps per user: live allocations (quota) and
// the per-user bandwidth buckets. Guarded by Server.mu except the buckets.
type userState struct {
	name    string
	allocs  int
	buckets [numDirs]atomic.Pointer[tokenBucket]
}

// tokenBucket is a byte-rate limiter. Safe for concurrent use; the data
// path takes it once per datagram when a cap is configured.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64 // bytes per nanosecond
	burst  float64 // bytes
	tokens float64
	last   int64
}

// newBucket returns a bucket for bitrate bits/s, or nil for no cap. The
// burst is 200 ms of traffic, at least 16 KiB, so that a video key frame
// passes under a cap set to the stream's average rate.
func newBucket(bitrate int64, now int64) *tokenBucket {
	if bitrate <= 0 {
		return nil
	}
	bps := float64(bitrate) / 8
	burst := max(bps/5, 16<<10)
	return &tokenBucket{rate: bps / 1e9, burst: burst, tokens: burst, last: now}
}

func (b *tokenBucket) take(n int, now int64) bool {
	b.mu.Lock()
	if dt := now - b.last; dt > 0 {
		b.tokens = min(b.burst, b.tokens+float64(dt)*b.rate)
		b.last = now
	}
	ok := b.tokens >= float64(n)
	if ok {
		b.tokens -= float64(n)
	}
	b.mu.Unlock()
	return ok
}

// charge takes n bytes even when the bucket holds fewer tokens, and returns
// how long it takes the bucket to repay the debt (0 when there is none).
func (b *tokenBucket) charge(n int, now int64) time.Duration {
	b.mu.Lock()
	if dt := now - b.last; dt > 0 {
		b.tokens = min(b.burst, b.tokens+float64(dt)*b.rate)
		b.last = now
	}
	b.tokens -= float64(n)
	var w time.Duration
	if b.tokens < 0 {
		w = time.Duration(-b.tokens / b.rate)
	}
	b.mu.Unlock()
	return w
}

// relayConn is a UDP allocation's relay socket as pion sees it: a
// net.PacketConn whose ReadFrom yields only what the worker hands to the
// slow path (datagrams from peers that have a permission but no channel,
// and all traffic of TCP/TLS clients) and whose WriteTo sends on the raw
// socket. Safe for concurrent use.
type relayConn struct {
	// set at creation, never changed
	a    *alloc
	sock sockFD
	w    *worker // the worker whose epoll set holds the socket

	q pktQueue // the slow path, popped by pion's reader

	wmu sync.Mutex // serialises WriteTo's scratch
	wm  *udpbatch.Sender
}

// slowQueue is how many peer datagrams may wait for pion per allocation;
// more are dropped (queue_full). TCP/TLS clients' traffic all takes this
// path, so it absorbs bursts.
const slowQueue = 512

// ReadFrom implements net.PacketConn for pion's per-allocation reader.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	sp, ok := c.q.pop()
	if !ok {
		return 0, nil, net.ErrClosed
	}
	n := copy(p, (*sp.buf)[4:4+sp.n])
	bufPool.Put(sp.buf)
	return n, net.UDPAddrFromAddrPort(sp.from), nil
}

// WriteTo implements net.PacketConn: pion's Send indications and the
// ChannelData of TCP/TLS clients.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, net.InvalidAddrError("not a UDP address")
	}
	dst := ua.AddrPort()
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	a := c.a
	st := &a.srv.stats
	if dst.Addr().Is4() == a.v6 {
		st.drops[dropSendError].Add(1)
		return 0, net.InvalidAddrError("address family mismatch")
	}
	if t := a.table.Load(); t != nil {
		if ok, denied := t.permitted(dst.Addr()); !ok || denied {
			st.drops[dropPeerDenied].Add(1)
			return len(p), nil // silently discarded, as RFC 8656 wants
		}
	}
	if !a.allow(dirToPeer, len(p), a.srv.nanotime()) {
		st.drops[dropBandwidth].Add(1)
		return len(p), nil
	}
	c.wmu.Lock()
	if c.wm == nil {
		c.wm = udpbatch.NewSender(1, nil) // only allocations that use the slow path pay for it
	}
	bufs, dsts := [1][]byte{p}, [1]netip.AddrPort{dst}
	failed, _ := c.sock.send(c.wm, a.v6, bufs[:], dsts[:])
	c.wmu.Unlock()
	if failed != 0 {
		st.drops[dropSendError].Add(1)
		return 0, syscall.EAGAIN
	}
	a.count(dirToPeer, len(p))
	st.packets[dirToPeer].Add(1)
	st.bytes[dirToPeer].Add(uint64(len(p)))
	return len(p), nil
}

// Close implements net.PacketConn; pion calls it when the allocation ends.
// It is idempotent.
func (c *relayConn) Close() error {
	c.a.srv.releaseUDP(c)
	return nil
}

// LocalAddr implements net.PacketConn.
func (c *relayConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.a.relayAddr) }

// SetDeadline implements net.PacketConn; pion sets none on relay sockets.
func (c *relayConn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline implements net.PacketConn.
func (c *relayConn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline implements net.PacketConn.
func (c *relayConn) SetWriteDeadline(time.Time) error { return nil }

// setChanLocked binds channel num to peer; the caller holds a.mu.
func (a *alloc) setChanLocked(num uint16, peer netip.AddrPort) {
	for i := range a.chans {
		if a.chans[i].num == num {
			a.chans[i].peer = peer
			return
		}
	}
	a.chans = append(a.chans, chanEntry{num: num, peer: peer})
}

// delChanLocked unbinds channel num; the caller holds a.mu.
func (a *alloc) delChanLocked(num uint16) {
	for i := range a.chans {
		if a.chans[i].num == num {
			a.chans = append(a.chans[:i], a.chans[i+1:]...)
			return
		}
	}
}

// setPermLocked adds a permission for peer IP p; the caller holds a.mu.
func (a *alloc) setPermLocked(p netip.Addr) {
	for _, q := range a.perms {
		if q == p {
			return
		}
	}
	a.perms = append(a.perms, p)
}

// delPermLocked removes the permission for p; the caller holds a.mu.
func (a *alloc) delPermLocked(p netip.Addr) {
	for i, q := range a.perms {
		if q == p {
			a.perms = append(a.perms[:i], a.perms[i+1:]...)
			return
		}
	}
}
