package relay

import (
	"math/rand/v2"
	"sync"
)

// portPool hands out relay ports of one range, protocol and address
// family. It remembers the ports the relay holds and, to pick one, starts
// at a random free port and walks the range, trying to bind each free port
// until one succeeds: a nearly full range still yields every port that is
// free (pion's stock generator gives up after a few random collisions).
// Safe for concurrent use.
type portPool struct {
	min uint16
	n   int

	mu    sync.Mutex
	used  []uint64 // bitmap of ports the relay holds
	inUse int
	rnd   *rand.Rand
}

func newPortPool(min, max uint16) *portPool {
	n := int(max-min) + 1
	return &portPool{
		min:  min,
		n:    n,
		used: make([]uint64, (n+63)/64),
		rnd:  rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
}

func (p *portPool) isUsed(off int) bool { return p.used[off/64]&(1<<(off%64)) != 0 }
func (p *portPool) mark(off int)        { p.used[off/64] |= 1 << (off % 64) }
func (p *portPool) unmark(off int)      { p.used[off/64] &^= 1 << (off % 64) }

// take reserves a port and binds it with bind, which returns a nil error
// on success, an error for which inUse is true when the port is taken by
// someone else, or another error that ends the search. requested, when not
// zero, is the only port tried. It returns the port's offset in the range.
func (p *portPool) take(requested int, bind func(port uint16) error, inUse func(error) bool) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if requested != 0 {
		off := requested - int(p.min)
		if off < 0 || off >= p.n || p.isUsed(off) {
			return 0, errPortsExhausted
		}
		if err := bind(uint16(requested)); err != nil {
			return 0, err
		}
		p.mark(off)
		p.inUse++
		return off, nil
	}
	if p.inUse >= p.n {
		return 0, errPortsExhausted
	}
	start := p.rnd.IntN(p.n)
	for i := 0; i < p.n; i++ {
		off := start + i
		if off >= p.n {
			off -= p.n
		}
		if p.isUsed(off) {
			continue
		}
		err := bind(p.min + uint16(off))
		if err == nil {
			p.mark(off)
			p.inUse++
			return off, nil
		}
		if !inUse(err) {
			return 0, err
		}
	}
	return 0, errPortsExhausted
}

// release returns the port at offset off.
func (p *portPool) release(off int) {
	p.mu.Lock()
	if off >= 0 && off < p.n && p.isUsed(off) {
		p.unmark(off)
		p.inUse--
	}
	p.mu.Unlock()
}

// count returns how many ports the relay holds.
func (p *portPool) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse
}
