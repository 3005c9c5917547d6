package relay

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPortPoolNearlyFull checks that the pool hands out every port that is
// free, however few are left, skipping ports another process holds, and
// that released ports come back.
func TestPortPoolNearlyFull(t *testing.T) {
	const lo, hi = 50000, 50099
	for _, tc := range []struct {
		name    string
		foreign map[uint16]bool // ports held by someone else
	}{
		{name: "empty host", foreign: map[uint16]bool{}},
		{name: "all but three held elsewhere", foreign: func() map[uint16]bool {
			m := map[uint16]bool{}
			for p := uint16(lo); p <= hi; p++ {
				if p != 50007 && p != 50050 && p != 50099 {
					m[p] = true
				}
			}
			return m
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPortPool(lo, hi)
			bind := func(port uint16) error {
				if tc.foreign[port] {
					return unix.EADDRINUSE
				}
				return nil
			}
			want := hi - lo + 1 - len(tc.foreign)
			got := map[int]bool{}
			for i := 0; i < want; i++ {
				off, err := p.take(0, bind, isAddrInUse)
				if err != nil {
					t.Fatalf("take %d of %d: %v", i+1, want, err)
				}
				if got[off] || tc.foreign[uint16(lo+off)] {
					t.Fatalf("port %d handed out twice or held elsewhere", lo+off)
				}
				got[off] = true
			}
			if _, err := p.take(0, bind, isAddrInUse); !errors.Is(err, errPortsExhausted) {
				t.Fatalf("take on a full range: %v, want errPortsExhausted", err)
			}
			if p.count() != want {
				t.Fatalf("count = %d, want %d", p.count(), want)
			}
			for off := range got {
				p.release(off)
				again, err := p.take(0, bind, isAddrInUse)
				if err != nil || again != off {
					t.Fatalf("after releasing %d: took %d, %v", lo+off, lo+again, err)
				}
				break
			}
			// A requested port that is taken is refused, not substituted.
			for off := range got {
				if _, err := p.take(lo+off, bind, isAddrInUse); !errors.Is(err, errPortsExhausted) {
					t.Fatalf("requested port in use: %v", err)
				}
				break
			}
		})
	}
}
