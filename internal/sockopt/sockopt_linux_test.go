package sockopt

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func rawUDP(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// TestApplyFD sets every option on a raw descriptor and reads it back.
func TestApplyFD(t *testing.T) {
	fd := rawUDP(t)
	o := Options{RecvBuffer: 1 << 20, SendBuffer: 512 << 10, ReusePort: true, ReuseAddr: true}
	if os.Geteuid() == 0 {
		o.Mark = 0x4d45
	}
	if err := o.ApplyFD(fd); err != nil {
		t.Fatal(err)
	}
	g, err := ReadFD(fd)
	if err != nil {
		t.Fatal(err)
	}
	// Linux doubles what it grants; without CAP_NET_ADMIN it caps at
	// net.core.[rw]mem_max, which is at least the default 212992.
	if os.Geteuid() == 0 && (g.RecvBuffer != 2*o.RecvBuffer || g.SendBuffer != 2*o.SendBuffer) {
		t.Errorf("granted %+v, want twice %d and %d", g, o.RecvBuffer, o.SendBuffer)
	}
	if g.RecvBuffer < 212992 || g.SendBuffer < 212992 {
		t.Errorf("granted %+v, want at least the kernel default", g)
	}
	for _, opt := range []struct {
		name string
		opt  int
		want int
	}{
		{"SO_REUSEPORT", unix.SO_REUSEPORT, 1},
		{"SO_REUSEADDR", unix.SO_REUSEADDR, 1},
		{"SO_MARK", unix.SO_MARK, int(o.Mark)},
	} {
		if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, opt.opt); err != nil || v != opt.want {
			t.Errorf("%s = %d, %v; want %d", opt.name, v, err, opt.want)
		}
	}
}

// TestApplyFDMarkUnprivileged: a mark the kernel refuses is an error
// naming the capability, never a silently unmarked socket. As root the
// check runs on a thread whose effective capabilities lack CAP_NET_ADMIN
// and CAP_NET_RAW.
func TestApplyFDMarkUnprivileged(t *testing.T) {
	fd := rawUDP(t)
	errc := make(chan error, 1)
	go func() {
		// The thread keeps its reduced capabilities: it is never unlocked,
		// so it ends with this goroutine instead of returning to the pool.
		runtime.LockOSThread()
		if os.Geteuid() == 0 {
			// The kernel allows SO_MARK with either capability.
			if err := dropEffective(unix.CAP_NET_ADMIN, unix.CAP_NET_RAW); err != nil {
				errc <- fmt.Errorf("capset: %w", err)
				return
			}
		}
		errc <- Options{Mark: 0x4d45}.ApplyFD(fd)
	}()
	err := <-errc
	if !errors.Is(err, unix.EPERM) {
		t.Fatalf("err = %v, want EPERM", err)
	}
	if !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
		t.Errorf("error %q does not name CAP_NET_ADMIN", err)
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK); err != nil || v != 0 {
		t.Errorf("SO_MARK = %d, %v after a refused mark; want 0", v, err)
	}
}

// dropEffective clears capabilities from the calling thread's effective set.
func dropEffective(caps ...int) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	for _, c := range caps {
		data[c/32].Effective &^= 1 << (uint(c) % 32)
	}
	return unix.Capset(&hdr, &data[0])
}

func TestReadFDBadDescriptor(t *testing.T) {
	if _, err := ReadFD(-1); !errors.Is(err, unix.EBADF) {
		t.Fatalf("err = %v, want EBADF", err)
	}
	if err := (Options{ReusePort: true}).ApplyFD(-1); !errors.Is(err, unix.EBADF) {
		t.Fatalf("err = %v, want EBADF", err)
	}
}
