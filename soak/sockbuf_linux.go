package soak

import "syscall"

// forceRcvbuf sets fd's receive buffer to n bytes with SO_RCVBUFFORCE,
// which passes net.core.rmem_max but needs CAP_NET_ADMIN (EPERM otherwise).
func forceRcvbuf(fd uintptr, n int) error {
	return syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, n)
}
