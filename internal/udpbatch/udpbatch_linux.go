package udpbatch

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr from <sys/socket.h>; Go pads it like C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// batch is the scratch space of one direction. The hdrs point into iovs and
// names, so none of the three is ever reallocated after init.
type batch struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	// per call, set before rc.Read/Write and read after
	cnt  int
	done int
	err  error
	// fn is the method value given to RawConn; built once so that a call
	// allocates no closure.
	fn func(fd uintptr) bool
}

func newBatch(n int) batch {
	b := batch{
		hdrs:  make([]mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
	}
	for i := range b.hdrs {
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.SetIovlen(1)
		b.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	}
	return b
}

type sysConn struct {
	rc     syscall.RawConn
	v6     bool
	single bool // the kernel refused recvmmsg/sendmmsg (ENOSYS)
	r, w   batch
}

func (s *sysConn) init(uc *net.UDPConn, n int, v6 bool) {
	s.v6 = v6
	rc, err := uc.SyscallConn()
	if err != nil {
		s.single = true
		return
	}
	s.rc = rc
	s.r, s.w = newBatch(n), newBatch(n)
	s.r.fn = s.doRead
	s.w.fn = s.doWrite
}

func (s *sysConn) mode() Mode {
	if s.single {
		return ModeSingle
	}
	return ModeMmsg
}

func (s *sysConn) read(uc *net.UDPConn, msgs []Message) (int, error) {
	if s.single {
		return readSingle(uc, msgs)
	}
	n := min(len(msgs), len(s.r.hdrs))
	for i := 0; i < n; i++ {
		buf := msgs[i].Buf
		if len(buf) == 0 {
			n = i
			break
		}
		s.r.iovs[i].Base = &buf[0]
		s.r.iovs[i].SetLen(len(buf))
		h := &s.r.hdrs[i].hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.Flags = 0
	}
	if n == 0 {
		return 0, errors.New("udpbatch: read with an empty buffer")
	}
	s.r.cnt, s.r.done, s.r.err = n, 0, nil
	if err := s.rc.Read(s.r.fn); err != nil {
		return 0, err
	}
	if s.r.err != nil {
		if errors.Is(s.r.err, unix.ENOSYS) {
			s.single = true
			return readSingle(uc, msgs)
		}
		return 0, &net.OpError{Op: "recvmmsg", Net: "udp", Err: s.r.err}
	}
	for i := 0; i < s.r.done; i++ {
		msgs[i].N = int(s.r.hdrs[i].n)
		msgs[i].Addr = parseSockaddr(&s.r.names[i])
		s.r.iovs[i].Base = nil // do not keep the caller's buffer reachable
	}
	return s.r.done, nil
}

func (s *sysConn) doRead(fd uintptr) bool {
	for {
		r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.r.hdrs[0])),
			uintptr(s.r.cnt), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			s.r.done = int(r)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // wait for the netpoller to say readable
		}
		s.r.err = errno
		return true
	}
}

func (s *sysConn) write(uc *net.UDPConn, msgs []Message) (int, error) {
	if s.single {
		return writeSingle(uc, s.v6, msgs)
	}
	sent := 0
	for sent < len(msgs) {
		chunk := msgs[sent:]
		n := min(len(chunk), len(s.w.hdrs))
		for i := 0; i < n; i++ {
			m := &chunk[i]
			if m.N > 0 {
				s.w.iovs[i].Base = &m.Buf[0]
			} else {
				s.w.iovs[i].Base = nil
			}
			s.w.iovs[i].SetLen(m.N)
			s.w.hdrs[i].hdr.Namelen = putSockaddr(&s.w.names[i], m.Addr, s.v6)
		}
		s.w.cnt, s.w.done, s.w.err = n, 0, nil
		if err := s.rc.Write(s.w.fn); err != nil {
			return sent, err
		}
		sent += s.w.done
		if s.w.err != nil {
			if errors.Is(s.w.err, unix.ENOSYS) && sent == 0 {
				s.single = true
				return writeSingle(uc, s.v6, msgs)
			}
			return sent, &net.OpError{Op: "sendmmsg", Net: "udp", Err: s.w.err}
		}
	}
	for i := range s.w.iovs {
		s.w.iovs[i].Base = nil
	}
	return sent, nil
}

func (s *sysConn) doWrite(fd uintptr) bool {
	for s.w.done < s.w.cnt {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&s.w.hdrs[s.w.done])),
			uintptr(s.w.cnt-s.w.done), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			s.w.done += int(r)
			continue
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false // socket buffer full: wait until writable
		}
		s.w.err = errno
		return true
	}
	return true
}

func parseSockaddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), ntohs(sa4.Port))
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

func putSockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort, v6 bool) uint32 {
	a := ap.Addr()
	if !v6 && a.Is4() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: htons(ap.Port()), Addr: a.As4()}
		return unix.SizeofSockaddrInet4
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: htons(ap.Port()), Addr: a.As16()}
	return unix.SizeofSockaddrInet6
}

// ntohs and htons convert the port, which the kernel stores in network byte
// order inside the sockaddr.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

func htons(p uint16) uint16 {
	var out uint16
	b := (*[2]byte)(unsafe.Pointer(&out))
	b[0], b[1] = byte(p>>8), byte(p)
	return out
}
