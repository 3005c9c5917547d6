package gateway

import (
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// openSock creates a non-blocking UDP socket with the leg's options and
// binds it to addr:port (port 0: any). The socket is not yet in any epoll
// set. "::" serves IPv4 peers too, as IPv4-mapped addresses.
func openSock(addr netip.Addr, port uint16, lc *LegConfig) (*sock, error) {
	opts := sockopt.Options{RecvBuffer: int(lc.RecvBuffer), SendBuffer: int(lc.SendBuffer), Mark: uint32(lc.Mark)}
	fd, err := udpbatch.Open(netip.AddrPortFrom(addr, port), opts, addr.Is6() && addr.IsUnspecified())
	if err != nil {
		return nil, err
	}
	local, err := udpbatch.LocalAddr(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &sock{fd: fd, local: local, v6: addr.Is6()}, nil
}

// closeFD closes a socket's file descriptor.
func closeFD(fd int) { unix.Close(fd) }

// isAddrInUse reports a bind that failed because the port is taken.
func isAddrInUse(err error) bool { return udpbatch.IsAddrInUse(err) }

// grantedBuffers reads the buffer sizes the kernel gave a socket.
func grantedBuffers(so *sock) (sockopt.Granted, error) { return sockopt.ReadFD(so.fd) }
