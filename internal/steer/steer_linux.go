package steer

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Steerer owns one loaded copy of the steer program, its maps and its
// attachment to a network namespace. It is safe for concurrent use; Close
// detaches and frees everything and is idempotent.
type Steerer struct {
	// set in New, never changed
	objs steerObjects
	lnk  link.Link

	mu     sync.RWMutex // guards the following; Add and Remove read-lock it
	closed bool
	used   []bool // target slots in use
}

// maxTargets is half the size of the targets SOCKMAP (bpf/steer.c).
const maxTargets = 1024 // pairs: 2048 sockets

// New loads the program and attaches it to the network namespace of the
// calling thread. Without CAP_BPF and CAP_NET_ADMIN, or on a kernel
// without sk_lookup, the error wraps ErrUnsupported.
func New() (*Steerer, error) {
	var objs steerObjects
	if err := loadSteerObjects(&objs, nil); err != nil {
		return nil, classify("loading program", err)
	}
	ns, err := openNetns()
	if err != nil {
		_ = objs.Close()
		return nil, err
	}
	lnk, err := link.AttachNetNs(int(ns.Fd()), objs.Steer)
	ns.Close()
	if err != nil {
		_ = objs.Close()
		return nil, classify("attaching to the network namespace", err)
	}
	return &Steerer{objs: objs, lnk: lnk, used: make([]bool, maxTargets)}, nil
}

// openNetns opens the calling thread's network namespace (a test may run
// one thread in a namespace of its own).
func openNetns() (*os.File, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("steer: opening the network namespace: %w", err)
	}
	return f, nil
}

// classify wraps the refusals that mean "cannot steer here" in
// ErrUnsupported: EPERM from bpf(2) without CAP_BPF (or CAP_SYS_ADMIN) or
// from attaching without CAP_NET_ADMIN; ebpf.ErrNotSupported and EINVAL
// from a kernel that knows no sk_lookup program or attach type; E2BIG
// when the namespace has the most sk_lookup programs the kernel allows.
func classify(step string, err error) error {
	switch {
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w: %s: %w (needs CAP_BPF and CAP_NET_ADMIN)", ErrUnsupported, step, err)
	case errors.Is(err, ebpf.ErrNotSupported), errors.Is(err, unix.EINVAL):
		return fmt.Errorf("%w: %s: %w (needs Linux 5.9 or later)", ErrUnsupported, step, err)
	case errors.Is(err, unix.E2BIG):
		// netns_bpf_link_attach: at most BPF_SK_LOOKUP_MAX_PROGS (64)
		// sk_lookup programs per network namespace.
		return fmt.Errorf("%w: %s: %w (the network namespace runs 64 sk_lookup programs already)", ErrUnsupported, step, err)
	}
	return fmt.Errorf("steer: %s: %w", step, err)
}

// AddTarget puts fd4 and fd6, unconnected bound UDP sockets of each
// family (-1: none, and datagrams of that family are not steered), into
// the targets map and returns their handle. The sockets must stay open
// until RemoveTarget.
func (s *Steerer) AddTarget(fd4, fd6 int) (Target, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Target{}, ErrClosed
	}
	slot := -1
	for i, u := range s.used {
		if !u {
			slot = i
			break
		}
	}
	if slot < 0 {
		return Target{}, ErrFull
	}
	t := Target{slot: uint32(slot), fd4: fd4, fd6: fd6}
	for i, fd := range []int{fd4, fd6} {
		if fd < 0 {
			continue
		}
		// UDP sockets in a SOCKMAP need Linux 5.7; the kernel refuses a
		// socket that is not bound (EOPNOTSUPP).
		if err := s.objs.Targets.Update(2*t.slot+uint32(i), uint64(fd), ebpf.UpdateAny); err != nil {
			_ = s.objs.Targets.Delete(2 * t.slot)
			return Target{}, classify("adding a target socket", err)
		}
	}
	s.used[slot] = true
	return t, nil
}

// RemoveTarget takes t out of the targets map; datagrams for ports still
// registered to it then take the kernel's normal lookup.
func (s *Steerer) RemoveTarget(t Target) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	for i := range uint32(2) {
		if err := s.objs.Targets.Delete(2*t.slot + i); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("steer: removing a target: %w", err)
		}
	}
	s.used[t.slot] = false
	return nil
}

// Add steers datagrams addressed to local (a socket's bound address; the
// unspecified address means any local address of its family, and with
// dualStack "::" also any IPv4 address) to t's socket of their family. An
// entry for the same local is replaced. A family t has no socket for is
// left alone.
func (s *Steerer) Add(local netip.AddrPort, dualStack bool, t Target) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	ks, n := keys(local, dualStack)
	for i := 0; i < n; i++ {
		v := steerPortVal{Target: 2 * t.slot}
		if ks[i].Family == afInet6 {
			if t.fd6 < 0 {
				continue
			}
			v.Target++
		} else if t.fd4 < 0 {
			continue
		}
		if err := s.objs.Ports.Update(&ks[i], &v, ebpf.UpdateAny); err != nil {
			for j := 0; j < i; j++ {
				_ = s.objs.Ports.Delete(&ks[j])
			}
			return fmt.Errorf("steer: adding %s: %w", local, err)
		}
	}
	return nil
}

// Steers reports whether Add would steer datagrams to local (some of
// them, for a dual-stack socket) to t: whether t has a socket of its
// family.
func (t Target) Steers(local netip.AddrPort) bool {
	if local.Addr().Unmap().Is4() {
		return t.fd4 >= 0
	}
	return t.fd6 >= 0 || (local.Addr().IsUnspecified() && t.fd4 >= 0)
}

// Remove stops steering datagrams addressed to local (as given to Add).
// Removing an entry that does not exist is not an error.
func (s *Steerer) Remove(local netip.AddrPort, dualStack bool) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil // the entries went with the maps
	}
	ks, n := keys(local, dualStack)
	var first error
	for i := 0; i < n; i++ {
		if err := s.objs.Ports.Delete(&ks[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) && first == nil {
			first = fmt.Errorf("steer: removing %s: %w", local, err)
		}
	}
	return first
}

// Entries returns the number of (family, port, address) entries in the
// map: one per Add, two for a dual-stack socket. It walks the map; for
// tests and diagnostics, not the packet path.
func (s *Steerer) Entries() (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, ErrClosed
	}
	var (
		k steerPortKey
		v steerPortVal
		n int
	)
	it := s.objs.Ports.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		return n, fmt.Errorf("steer: walking the map: %w", err)
	}
	return n, nil
}

// ProgramID returns the kernel's id of the loaded program (what
// `bpftool prog show` lists).
func (s *Steerer) ProgramID() (ebpf.ProgramID, error) {
	info, err := s.objs.Steer.Info()
	if err != nil {
		return 0, fmt.Errorf("steer: program info: %w", err)
	}
	id, _ := info.ID()
	return id, nil
}

// Close detaches the program and frees its maps. It is idempotent.
func (s *Steerer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.lnk.Close()
	if cerr := s.objs.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("steer: closing: %w", err)
	}
	return nil
}
