package udpbatch

import (
	"errors"
	"syscall"
	"testing"
)

// TestGSOSwitch: only a persistent refusal turns GSO off, and exactly one
// caller hears of it: ENOPROTOOPT/EOPNOTSUPP at once; EIO and EINVAL after
// gsoStrikes refused batches in a row, a GSO message that goes through in
// between starting the count again.
func TestGSOSwitch(t *testing.T) {
	on := func() *GSO { g := &GSO{}; g.on.Store(true); return g }
	t.Run("transient", func(t *testing.T) {
		g := on()
		for range 3 {
			for i := 0; i < gsoStrikes-1; i++ {
				if err := g.observe(syscall.EINVAL, 0); err != nil || !g.Enabled() {
					t.Fatalf("refusal %d: %v, on %v", i+1, err, g.Enabled())
				}
			}
			g.observe(nil, 1) // a GSO message went through
		}
		if err := g.observe(nil, 0); err != nil || !g.Enabled() {
			t.Fatalf("a batch without GSO messages: %v, on %v", err, g.Enabled())
		}
	})
	for _, errno := range []syscall.Errno{syscall.EIO, syscall.EINVAL} {
		t.Run("persistent "+errno.Error(), func(t *testing.T) {
			g := on()
			var got []error
			for range 2 * gsoStrikes {
				if err := g.observe(errno, 0); err != nil {
					got = append(got, err)
				}
			}
			if len(got) != 1 || g.Enabled() {
				t.Fatalf("errors %v, on %v; want one error and off", got, g.Enabled())
			}
			if !errors.Is(got[0], ErrGSODisabled) || !errors.Is(got[0], errno) {
				t.Errorf("%v: want ErrGSODisabled wrapping %v", got[0], errno)
			}
		})
	}
	for _, errno := range []syscall.Errno{syscall.ENOPROTOOPT, syscall.EOPNOTSUPP} {
		t.Run("unsupported "+errno.Error(), func(t *testing.T) {
			g := on()
			if err := g.observe(errno, 0); !errors.Is(err, ErrGSODisabled) || g.Enabled() {
				t.Errorf("%v, on %v; want ErrGSODisabled and off", err, g.Enabled())
			}
		})
	}
	var none *GSO
	if none.Enabled() || none.Disable() || none.observe(syscall.EIO, 0) != nil {
		t.Error("a nil switch is not off")
	}
	if g := on(); !g.Disable() || g.Enabled() || g.Disable() {
		t.Error("Disable: want true once, then off")
	}
}
