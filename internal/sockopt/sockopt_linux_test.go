package sockopt

import (
	"errors"
	"os"
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
// naming the capability, never a silently unmarked socket.
func TestApplyFDMarkUnprivileged(t *testing.T) {
	fd := rawUDP(t)
	err := Options{Mark: 0x4d45}.ApplyFD(fd)
	if os.Geteuid() == 0 {
		if err != nil {
			t.Fatal(err)
		}
		t.Skip("running as root: SO_MARK is allowed")
	}
	if !errors.Is(err, unix.EPERM) {
		t.Fatalf("err = %v, want EPERM", err)
	}
}

func TestReadFDBadDescriptor(t *testing.T) {
	if _, err := ReadFD(-1); !errors.Is(err, unix.EBADF) {
		t.Fatalf("err = %v, want EBADF", err)
	}
	if err := (Options{ReusePort: true}).ApplyFD(-1); !errors.Is(err, unix.EBADF) {
		t.Fatalf("err = %v, want EBADF", err)
	}
}
