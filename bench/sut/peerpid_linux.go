package sut

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// SocketPeerPID returns the PID of the process serving a unix socket (the
// daemon behind its control socket), from SO_PEERCRED: the kernel records
// the credentials of the process that called listen(2).
func SocketPeerPID(path string) (int, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return 0, fmt.Errorf("sut: finding the daemon's PID: %w", err)
	}
	defer c.Close()
	rc, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var serr error
	if err := rc.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("sut: SO_PEERCRED on %s: %w", path, serr)
	}
	return int(cred.Pid), nil
}
