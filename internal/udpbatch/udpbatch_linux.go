package udpbatch

import (
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// sysConn is Conn's Linux side: RecvBatch and SendBatch on the socket's
// descriptor, waiting in Go's netpoller when the socket has nothing to
// read or no room to send.
type sysConn struct {
	rc     syscall.RawConn
	v6     bool
	single bool // the kernel refused recvmmsg/sendmmsg (ENOSYS)

	// the reader's side
	r     *RecvBatch
	rbufs [][]byte
	rcnt  int // datagrams asked for, then read
	rerr  error
	rfn   func(fd uintptr) bool // s.doRead, built once so a call allocates no closure

	// the writer's side
	w     *SendBatch
	wdone int // messages of the batch sent
	werr  error
	wfn   func(fd uintptr) bool
}

func (s *sysConn) init(uc *net.UDPConn, n int, v6 bool) {
	s.v6 = v6
	rc, err := uc.SyscallConn()
	if err != nil {
		s.single = true
		return
	}
	s.rc = rc
	s.r, s.rbufs = NewRecvBatch(n), make([][]byte, n)
	s.w = NewSendBatch(n)
	s.rfn, s.wfn = s.doRead, s.doWrite
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
	n := min(len(msgs), len(s.rbufs))
	for i := 0; i < n; i++ {
		if len(msgs[i].Buf) == 0 {
			n = i
			break
		}
		s.rbufs[i] = msgs[i].Buf
	}
	if n == 0 {
		return 0, errEmptyBuffer
	}
	s.rcnt, s.rerr = n, nil
	err := s.rc.Read(s.rfn)
	clear(s.rbufs[:n]) // keep no caller buffer reachable
	if err != nil {
		return 0, err
	}
	if s.rerr != nil {
		if errors.Is(s.rerr, unix.ENOSYS) {
			s.single = true
			return readSingle(uc, msgs)
		}
		return 0, &net.OpError{Op: "recvmmsg", Net: "udp", Err: s.rerr}
	}
	for i := 0; i < s.rcnt; i++ {
		msgs[i].N = s.r.Size(i)
		msgs[i].Addr = s.r.Addr(i)
	}
	return s.rcnt, nil
}

func (s *sysConn) doRead(fd uintptr) bool {
	n, err := s.r.Recv(int(fd), s.rbufs[:s.rcnt])
	if errors.Is(err, unix.EAGAIN) {
		return false // wait for the netpoller to say readable
	}
	s.rcnt, s.rerr = n, err
	return true
}

func (s *sysConn) write(uc *net.UDPConn, msgs []Message) (int, error) {
	if s.single {
		return writeSingle(uc, s.v6, msgs)
	}
	defer s.w.Reset(s.v6, false) // keep no caller buffer reachable
	sent := 0
	for sent < len(msgs) {
		// Without GSO each datagram is a message of its own.
		s.w.Reset(s.v6, false)
		var addErr error
		for i := sent; i < len(msgs) && addErr == nil; i++ {
			m := &msgs[i]
			if addErr = s.w.Add(m.Buf[:m.N], m.Addr); errors.Is(addErr, ErrBatchFull) {
				addErr = nil
				break
			}
		}
		if s.w.Len() > 0 {
			s.wdone, s.werr = 0, nil
			if err := s.rc.Write(s.wfn); err != nil {
				return sent + s.wdone, err
			}
			sent += s.wdone
			if s.werr != nil {
				if errors.Is(s.werr, unix.ENOSYS) && sent == 0 {
					s.single = true
					return writeSingle(uc, s.v6, msgs)
				}
				return sent, &net.OpError{Op: "sendmmsg", Net: "udp", Err: s.werr}
			}
		}
		if addErr != nil {
			// msgs[sent] has a destination of the other family.
			return sent, &net.OpError{Op: "sendmmsg", Net: "udp", Err: addErr}
		}
	}
	return sent, nil
}

func (s *sysConn) doWrite(fd uintptr) bool {
	n, err := s.w.Send(int(fd), s.wdone)
	s.wdone += n
	if errors.Is(err, unix.EAGAIN) {
		return false // socket buffer full: wait until writable
	}
	s.werr = err
	return true
}
