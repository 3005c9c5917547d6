package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"
)

// Netns is a named network namespace the scenario made with `ip netns add`,
// so that `ip -n NAME` and `ip netns exec NAME` work on it as well as
// in-process calls through Do. It is owned by the Topology that made it and
// ends with its delete.
type Netns struct {
	// Name is "<prefix>-<pid>-<role>".
	Name string
	// set by addNetns, closed by delete
	h netns.NsHandle
}

func addNetns(ctx context.Context, name string) (*Netns, error) {
	if _, err := run(ctx, "ip", "netns", "add", name); err != nil {
		return nil, err
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		_, _ = run(ctx, "ip", "netns", "del", name)
		return nil, fmt.Errorf("e2e: opening namespace %s: %w", name, err)
	}
	return &Netns{Name: name, h: h}, nil
}

// Do runs fn on an OS thread that has entered the namespace. Sockets that
// fn opens belong to the namespace for their whole life, whatever thread
// later uses them. fn must not start goroutines that expect to be in the
// namespace.
func (n *Netns) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is locked before it changes namespace. If it cannot
		// go back, it stays locked and the runtime destroys it when this
		// goroutine exits, so no other goroutine ever runs in the wrong
		// namespace.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("e2e: reading the current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(n.h); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("e2e: entering namespace %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("e2e: leaving namespace %s: %w", n.Name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// ListenUDP opens a UDP socket bound to addr inside the namespace.
func (n *Netns) ListenUDP(addr string) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := n.Do(func() error {
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp", ua)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("e2e: listening on %s in %s: %w", addr, n.Name, err)
	}
	return c, nil
}

// DialContext connects from inside the namespace; it fits
// http.Transport.DialContext.
func (n *Netns) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// IP runs `ip -n NAME args...`.
func (n *Netns) IP(ctx context.Context, args ...string) (string, error) {
	return run(ctx, "ip", append([]string{"-n", n.Name}, args...)...)
}

// Exec runs a short command inside the namespace.
func (n *Netns) Exec(ctx context.Context, name string, args ...string) (string, error) {
	return run(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Sysctl sets kernel parameters ("net.ipv4.ip_forward=1") in the namespace.
func (n *Netns) Sysctl(ctx context.Context, kv ...string) error {
	_, err := n.Exec(ctx, "sysctl", append([]string{"-q", "-w"}, kv...)...)
	return err
}

// delete kills what still runs in the namespace and removes it.
func (n *Netns) delete(ctx context.Context) error {
	killNetnsPids(ctx, n.Name)
	if n.h.IsOpen() {
		_ = n.h.Close()
	}
	_, err := run(ctx, "ip", "netns", "del", n.Name)
	return err
}

// killNetnsPids sends SIGKILL to every process inside the namespace: only
// processes this scenario (or a crashed earlier run of it) started live
// there.
func killNetnsPids(ctx context.Context, name string) {
	out, err := run(ctx, "ip", "netns", "pids", name)
	if err != nil {
		return
	}
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// CleanLeftovers removes the namespaces of earlier runs of prefix whose
// process is gone (a crash, a SIGKILL), with whatever still runs inside
// them, and their work directories. Namespaces of a live run are left
// alone. It returns the namespaces it removed.
func CleanLeftovers(ctx context.Context, prefix string) ([]string, error) {
	out, err := run(ctx, "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		name := f[0]
		pid, _, ok := parseNSName(prefix, name)
		if !ok || pidAlive(pid) {
			continue
		}
		killNetnsPids(ctx, name)
		if _, err := run(ctx, "ip", "netns", "del", name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	removeStaleWorkDirs(prefix)
	return removed, errors.Join(errs...)
}

// pidAlive reports whether a process with that ID exists.
func pidAlive(pid int) bool {
	if pid == os.Getpid() {
		return true
	}
	err := syscall.Kill(pid, 0)
	// EPERM: it exists but belongs to someone else.
	return err == nil || errors.Is(err, syscall.EPERM)
}
