package soak

import (
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/mediaedge/mediaedge/internal/sockopt"
)

// soakBuffer is the receive buffer of the soak's own sockets: large enough
// that a receiver the scheduler leaves waiting on a busy machine does not
// drop what the daemon relayed (which would count against the daemon).
const soakBuffer = 8 << 20

// bigBuffer enlarges c's receive buffer: SO_RCVBUFFORCE as root (beyond
// net.core.rmem_max), otherwise as far as rmem_max allows.
func bigBuffer(c *net.UDPConn) {
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = sockopt.Options{RecvBuffer: soakBuffer}.ApplyFD(int(fd))
		})
	}
}

// udpRcvbufErrors returns the UDP RcvbufErrors counter of the network
// namespace (/proc/net/snmp): datagrams a full socket buffer dropped, in
// the soak's receivers or in the daemon.
func udpRcvbufErrors() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return -1
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Udp: ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				return v
			}
		}
	}
	return -1
}
