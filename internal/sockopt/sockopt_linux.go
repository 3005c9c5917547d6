package sockopt

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

func (o Options) apply(fd int) error {
	if o.ReusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fmt.Errorf("sockopt: SO_REUSEPORT: %w", err)
		}
	}
	if o.ReuseAddr {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return fmt.Errorf("sockopt: SO_REUSEADDR: %w", err)
		}
	}
	if o.Mark != 0 {
		// SO_MARK needs CAP_NET_ADMIN (EPERM otherwise). Failing here is
		// right: an unmarked media socket would silently follow the VPN
		// default route, the very thing split tunnelling prevents.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(o.Mark)); err != nil {
			if errors.Is(err, unix.EPERM) {
				return fmt.Errorf("sockopt: SO_MARK %#x needs CAP_NET_ADMIN: %w", o.Mark, err)
			}
			return fmt.Errorf("sockopt: SO_MARK %#x: %w", o.Mark, err)
		}
	}
	if o.RecvBuffer > 0 {
		setBuffer(fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, o.RecvBuffer)
	}
	if o.SendBuffer > 0 {
		setBuffer(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, o.SendBuffer)
	}
	return nil
}

// setBuffer tries the FORCE option first (CAP_NET_ADMIN; it ignores
// net.core.[rw]mem_max) and falls back to the plain one, which the kernel
// silently caps at the sysctl maximum. Neither failure is fatal: the socket
// still works, and Read reports what was granted so the caller can log it.
func setBuffer(fd, force, plain, size int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size) == nil {
		return
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, size)
}

func read(fd int) (Granted, error) {
	r, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return Granted{}, fmt.Errorf("sockopt: reading SO_RCVBUF: %w", err)
	}
	s, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	if err != nil {
		return Granted{}, fmt.Errorf("sockopt: reading SO_SNDBUF: %w", err)
	}
	return Granted{RecvBuffer: r, SendBuffer: s}, nil
}
