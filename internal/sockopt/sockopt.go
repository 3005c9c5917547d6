// Package sockopt sets the socket options mediaedge's packet sockets need:
// explicit buffer sizes, SO_MARK for split-tunnel routing, SO_REUSEPORT for
// sharded listeners. Options are applied before bind, so a mark or
// reuseport flag is in place for the very first packet: in
// net.ListenConfig.Control for Go sockets, with ApplyFD for raw file
// descriptors (internal/udpbatch's data-path sockets).
package sockopt

import (
	"context"
	"net"
	"syscall"
)

// Options are the socket options to set. Zero values leave the kernel
// default in place.
type Options struct {
	// RecvBuffer and SendBuffer are the wanted SO_RCVBUF/SO_SNDBUF in bytes.
	// With CAP_NET_ADMIN the FORCE variants are used, which ignore
	// net.core.rmem_max/wmem_max; otherwise the kernel caps the value.
	RecvBuffer int
	SendBuffer int
	// Mark is the SO_MARK (fwmark) of every packet the socket sends; the
	// split-tunnel policy routes marked sockets via the direct uplink.
	// Setting it needs CAP_NET_ADMIN.
	Mark uint32
	// ReusePort sets SO_REUSEPORT so several sockets can share a port and
	// the kernel spreads flows across them.
	ReusePort bool
	// ReuseAddr sets SO_REUSEADDR (TCP listeners restarting over TIME_WAIT).
	ReuseAddr bool
}

// Granted reports the buffer sizes the kernel actually granted. Linux
// reports twice the requested value (it reserves room for bookkeeping), and
// Granted reports what getsockopt returns.
type Granted struct {
	RecvBuffer int
	SendBuffer int
}

// ListenConfig returns a net.ListenConfig that applies o to each socket.
func (o Options) ListenConfig() *net.ListenConfig {
	return &net.ListenConfig{Control: o.Control}
}

// ListenPacket opens a packet socket (e.g. "udp4", "127.0.0.1:0") with o
// applied.
func (o Options) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	return o.ListenConfig().ListenPacket(ctx, network, address)
}

// Control applies o to a raw socket; it has the signature of
// net.ListenConfig.Control and net.Dialer.Control.
func (o Options) Control(network, address string, c syscall.RawConn) error {
	var opErr error
	err := c.Control(func(fd uintptr) { opErr = o.apply(int(fd)) })
	if err != nil {
		return err
	}
	return opErr
}

// ApplyFD applies o to the raw socket fd. The caller owns fd; ApplyFD
// neither keeps nor closes it. Safe for concurrent use on distinct
// descriptors. Outside Linux it sets nothing and fails only for a Mark.
func (o Options) ApplyFD(fd int) error { return o.apply(fd) }

// ReadFD returns the buffer sizes granted on the raw socket fd.
func ReadFD(fd int) (Granted, error) { return read(fd) }

// Read returns the buffer sizes granted on conn's socket.
func Read(conn syscall.Conn) (Granted, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return Granted{}, err
	}
	var g Granted
	var opErr error
	err = rc.Control(func(fd uintptr) { g, opErr = read(int(fd)) })
	if err != nil {
		return Granted{}, err
	}
	return g, opErr
}
