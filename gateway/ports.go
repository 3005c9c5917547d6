package gateway

import (
	"math/rand/v2"
	"sync"

	"github.com/mediaedge/mediaedge/internal/config"
)

// portAlloc hands out local ports of one leg's range. It only knows which
// ports mediaedge holds; a port another program holds is found when bind
// fails, and the caller asks again. Safe for concurrent use.
type portAlloc struct {
	mu     sync.Mutex
	r      config.PortRange
	used   [65536 / 64]uint64
	cursor uint16
}

func newPortAlloc(r config.PortRange) *portAlloc {
	p := &portAlloc{r: r}
	if r.Len() > 0 {
		p.cursor = r.Min + uint16(rand.IntN(r.Len()))
	}
	return p
}

// setRange applies a reloaded range to later allocations; ports held from
// the old range stay held until released.
func (p *portAlloc) setRange(r config.PortRange) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r != p.r {
		p.r = r
		if !r.Contains(p.cursor) {
			p.cursor = r.Min
		}
	}
}

func (p *portAlloc) isUsed(port uint16) bool { return p.used[port/64]&(1<<(port%64)) != 0 }
func (p *portAlloc) mark(port uint16)        { p.used[port/64] |= 1 << (port % 64) }

// reserve returns a free port, or with pair an even port whose successor
// is free too (RTP and RTCP without rtcp-mux, RFC 3550 section 11), and
// marks it held. Ports are handed out round-robin from a random start so
// that a port is not reused right after release (late packets of an
// ended call then reach nobody rather than the next call). ok is false
// when the range has no free port left.
func (p *portAlloc) reserve(pair bool) (port uint16, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.r.Len()
	for i := 0; i < n; i++ {
		c := p.cursor
		p.cursor++
		if !p.r.Contains(p.cursor) {
			p.cursor = p.r.Min
		}
		if pair && (c%2 != 0 || c == p.r.Max) {
			continue
		}
		if p.isUsed(c) || (pair && p.isUsed(c+1)) {
			continue
		}
		p.mark(c)
		if pair {
			p.mark(c + 1)
		}
		return c, true
	}
	return 0, false
}

// reserveLowest returns the lowest free even port of the range whose
// successor is free too, for shared sockets: they stay on the same ports
// across restarts, which firewall rules can name.
func (p *portAlloc) reserveLowest() (port uint16, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := int(p.r.Min + p.r.Min%2); c+1 <= int(p.r.Max); c += 2 {
		if !p.isUsed(uint16(c)) && !p.isUsed(uint16(c+1)) {
			p.mark(uint16(c))
			p.mark(uint16(c + 1))
			return uint16(c), true
		}
	}
	return 0, false
}

// release gives port back.
func (p *portAlloc) release(port uint16) {
	if port == 0 {
		return
	}
	p.mu.Lock()
	p.used[port/64] &^= 1 << (port % 64)
	p.mu.Unlock()
}
