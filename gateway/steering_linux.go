package gateway

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
	"github.com/mediaedge/mediaedge/internal/steer"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// steerSys is a worker's part of steering (steering.go); zero when the
// gateway runs without.
type steerSys struct {
	// set in openSteering, never changed
	st     *steer.Steerer
	target steer.Target
	socks  [2]*sock            // the target sockets (IPv4, IPv6), in the epoll set
	rx     *udpbatch.RecvBatch // with control messages (original destination)

	// owned by the worker goroutine
	// byPort maps a port to the dedicated sockets registered for
	// steering on it (chained through sock.steerNext: the same port on
	// two addresses, rarely). 65,536 entries, made in openSteering.
	byPort []*sock
}

// openSteering opens the worker's target sockets, adds them to st and to
// the worker's epoll set. Called by Start before the worker runs.
func (s *workerSys) openSteering(st *steer.Steerer, cfg *Config) error {
	// The targets queue the datagrams of every dedicated socket of the
	// worker: give them the larger of the legs' buffers.
	rb := max(cfg.Internal.RecvBuffer, cfg.Cloud.RecvBuffer)
	fd4, fd6, err := steer.OpenTarget(sockopt.Options{RecvBuffer: int(rb)})
	if err != nil {
		return fmt.Errorf("gateway: opening steering targets: %w", err)
	}
	t, err := st.AddTarget(fd4, fd6)
	if err != nil {
		unix.Close(fd4)
		if fd6 >= 0 {
			unix.Close(fd6)
		}
		return err
	}
	ss := &s.steer
	ss.st, ss.target = st, t
	for i, fd := range []int{fd4, fd6} {
		if fd >= 0 {
			local, _ := udpbatch.LocalAddr(fd)
			ss.socks[i] = &sock{fd: fd, local: local, v6: i == 1, target: true}
		}
	}
	for _, so := range ss.socks {
		if so == nil {
			continue
		}
		if err := s.register(so); err != nil {
			s.closeSteering()
			return err
		}
	}
	ss.rx = udpbatch.NewRecvBatchOrigDst(s.rx.Cap())
	ss.byPort = make([]*sock, 1<<16)
	return nil
}

// closeSteering takes the worker's targets out of the steerer and closes
// them. The worker's dedicated sockets unregistered before.
func (s *workerSys) closeSteering() {
	ss := &s.steer
	if ss.st == nil {
		return
	}
	_ = ss.st.RemoveTarget(ss.target)
	for i, so := range ss.socks {
		if so != nil {
			s.loop.Remove(so.fd)
			if so.fd < len(s.socks) && s.socks[so.fd] == so {
				s.socks[so.fd] = nil
			}
			unix.Close(so.fd)
			ss.socks[i] = nil
		}
	}
	*ss = steerSys{}
}

// steerAdd registers dedicated socket so for steering to this worker.
// When the steerer refuses, so is read on its own as without steering.
func (s *workerSys) steerAdd(so *sock) {
	ss := &s.steer
	if ss.st == nil || so.dm != nil || so.target || !ss.target.Steers(so.local) {
		return
	}
	dual := so.v6 && so.local.Addr().IsUnspecified()
	if err := ss.st.Add(so.local, dual, ss.target); err != nil {
		s.steerFailed(err)
		return
	}
	p := so.local.Port()
	so.steerNext = ss.byPort[p]
	ss.byPort[p] = so
	so.steerBy = ss.st
}

// steerRemove removes so's entry before it closes: datagrams for its port
// that were steered already are dropped (reasonUnsteered) once read.
func (s *workerSys) steerRemove(so *sock) {
	if so.steerBy == nil {
		return
	}
	_ = so.steerBy.Remove(so.local, so.v6 && so.local.Addr().IsUnspecified())
	so.steerBy = nil
	ss := &s.steer
	for pp := &ss.byPort[so.local.Port()]; *pp != nil; pp = &(*pp).steerNext {
		if *pp == so {
			*pp = so.steerNext
			break
		}
	}
	so.steerNext = nil
}

// steerFind returns the dedicated socket a datagram to dst was for, or
// nil.
func (s *workerSys) steerFind(dst netip.AddrPort) *sock {
	a := dst.Addr()
	for so := s.steer.byPort[dst.Port()]; so != nil; so = so.steerNext {
		if b := so.local.Addr(); b == a || (b.IsUnspecified() && (b.Is6() || a.Is4())) {
			return so
		}
	}
	return nil
}

// legOfPort guesses the leg a port belongs to from the port ranges, for
// counting a drop whose socket is gone.
func (w *worker) legOfPort(p uint16) legID {
	if w.cfg.Cloud.Ports.Contains(p) {
		return legCloud
	}
	return legInternal
}
