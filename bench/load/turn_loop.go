package load

import (
	"sync/atomic"

	"github.com/mediaedge/mediaedge/internal/evloop"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// recvLoop reads every allocation's socket on one goroutine: an epoll set
// (internal/evloop) reports the sockets with datagrams, and each is read
// with recvmmsg into the loop's own buffers. With 10,000 allocations this
// costs one wake-up per batch of ready sockets and one system call per
// socket, where a goroutine per socket costs a goroutine wake-up and a
// second, empty read per datagram. newRecvLoop starts it; stop ends it.
// Where evloop is not available (not Linux) the allocations get a reader
// goroutine each instead.
type recvLoop struct {
	// set in newRecvLoop, never changed
	r    *turnRun
	loop *evloop.Loop
	// slots holds the allocations by id, which is their epoll tag; nil:
	// not (or no longer) served.
	slots []atomic.Pointer[allocation]
	done  chan struct{}

	// owned by the loop's goroutine
	rb   *udpbatch.RecvBatch
	bufs [][]byte
}

// recvBatch is how many datagrams one read of a socket takes: a socket
// rarely holds more than one (each allocation sends a few per second), and
// level-triggered epoll reports a socket again while it holds more.
const recvBatch = 4

// newRecvLoop starts the loop for n allocations.
func newRecvLoop(r *turnRun, n int) (*recvLoop, error) {
	l, err := evloop.New(evloop.Config{Name: "bench", Clock: r.now})
	if err != nil {
		return nil, err
	}
	// Never sleep to batch: bench measures latency.
	l.SetCoalesce(0)
	rl := &recvLoop{r: r, loop: l, slots: make([]atomic.Pointer[allocation], n), done: make(chan struct{}),
		rb: udpbatch.NewRecvBatch(recvBatch), bufs: make([][]byte, recvBatch)}
	for i := range rl.bufs {
		rl.bufs[i] = make([]byte, rxBuffer)
	}
	go func() {
		defer close(rl.done)
		_ = l.Run(rl)
	}()
	return rl, nil
}

// add serves a's socket from now on.
func (rl *recvLoop) add(a *allocation) error {
	rc, err := a.conn.SyscallConn()
	if err != nil {
		return err
	}
	if cerr := rc.Control(func(fd uintptr) { a.fd = int(fd) }); cerr != nil {
		return cerr
	}
	rl.slots[a.id].Store(a)
	if err := rl.loop.Add(a.fd, int32(a.id)); err != nil {
		rl.slots[a.id].Store(nil)
		return err
	}
	return nil
}

// remove stops serving a's socket. The socket must stay open until stop:
// a round may still hold its descriptor number, which a new socket would
// otherwise reuse.
func (rl *recvLoop) remove(a *allocation) {
	rl.slots[a.id].Store(nil)
	rl.loop.Remove(a.fd)
}

// stop ends the loop and waits for its goroutine. Idempotent.
func (rl *recvLoop) stop() {
	_ = rl.loop.Close()
	<-rl.done
}

// Round is part of evloop.Handler: nothing to prepare.
func (rl *recvLoop) Round(int64) {}

// Woken is part of evloop.Handler: Wake is not used.
func (rl *recvLoop) Woken() {}

// Flush is part of evloop.Handler: bench sends nothing from the loop.
func (rl *recvLoop) Flush() {}

// Ready is part of evloop.Handler: it reads one batch from the socket of
// allocation tag.
func (rl *recvLoop) Ready(tag int32) (int, bool) {
	if tag < 0 || int(tag) >= len(rl.slots) {
		return 0, false
	}
	a := rl.slots[tag].Load()
	if a == nil {
		return 0, false
	}
	// EAGAIN: another round took it; an ICMP error is consumed by the
	// read that meets it, and the next round reads what follows.
	n, err := rl.rb.Recv(a.fd, rl.bufs)
	if err != nil {
		return 0, false
	}
	now := rl.r.now()
	for i := 0; i < n; i++ {
		rl.r.handle(a, rl.bufs[i][:rl.rb.Size(i)], rl.rb.Addr(i), now)
	}
	return n, n == len(rl.bufs)
}
