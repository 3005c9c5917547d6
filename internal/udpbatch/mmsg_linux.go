package udpbatch

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr from <sys/socket.h>; Go pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// headers are the message headers of a batch, each pointing to its own
// socket address; the iovecs they use are set per call. None of the three
// slices is ever reallocated, since the headers point into the others.
type headers struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
}

func newHeaders(n int) headers {
	h := headers{
		hdrs:  make([]mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
	}
	for i := range h.hdrs {
		h.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&h.names[i]))
	}
	return h
}

// The data path issues recvmmsg and sendmmsg as raw system calls, without
// the scheduler's bookkeeping for calls that may block: with MSG_DONTWAIT
// neither ever sleeps (a socket with nothing to read, or no room to send,
// fails at once with EAGAIN), and the bookkeeping of a blocking call keeps
// the runtime's monitor thread waking every 20 µs to retake the processor,
// which costs more than a batch of small datagrams. Callers that want to
// wait for a socket do it in an epoll set or in Go's netpoller.
//
// sendmmsg sends messages in order and stops at the first the kernel
// refuses: with some already sent it returns their number and drops the
// error, which the next call, starting at the refused message, reports.

// mmsg issues recvmmsg or sendmmsg (trap) for up to n messages of hdrs
// without blocking; EINTR (a signal arriving during the call) is retried.
func mmsg(trap uintptr, fd int, hdrs *mmsghdr, n int) (int, unix.Errno) {
	for {
		r, _, errno := unix.RawSyscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(hdrs)), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
		if errno != unix.EINTR {
			return int(r), errno
		}
	}
}
