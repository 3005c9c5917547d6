package relay

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
)

// clientTable maps a UDP listener's client addresses to allocations. Reads
// (one per ChannelData datagram) are lock-free: each shard publishes
// immutable maps that writers copy, change and swap under the shard's
// mutex. Sharding keeps a copy small when there are thousands of
// allocations (ten entries per shard at 10,000 allocations). IPv4 clients
// are keyed by a uint64 (address and port), which Go's maps look up much
// faster than a netip.AddrPort.
type clientTable struct {
	shards [1024]clientShard
}

type clientShard struct {
	mu sync.Mutex
	m  atomic.Pointer[clientMaps]
}

type clientMaps struct {
	v4 map[uint64]*alloc
	v6 map[netip.AddrPort]*alloc
}

func key4(ap netip.AddrPort) (uint64, bool) {
	a := ap.Addr()
	if !a.Is4() {
		return 0, false
	}
	b := a.As4()
	return uint64(binary.BigEndian.Uint32(b[:]))<<16 | uint64(ap.Port()), true
}

func (t *clientTable) shard(ap netip.AddrPort) *clientShard {
	b := ap.Addr().As16()
	h := binary.BigEndian.Uint32(b[12:]) ^ uint32(ap.Port())*2654435761
	return &t.shards[(h^h>>16)%uint32(len(t.shards))]
}

func (t *clientTable) get(ap netip.AddrPort) *alloc {
	m := t.shard(ap).m.Load()
	if m == nil {
		return nil
	}
	if k, ok := key4(ap); ok {
		return m.v4[k]
	}
	return m.v6[ap]
}

// put maps ap to a.
func (t *clientTable) put(ap netip.AddrPort, a *alloc) {
	t.edit(ap, func(m *clientMaps) {
		if k, ok := key4(ap); ok {
			m.v4[k] = a
		} else {
			if m.v6 == nil {
				m.v6 = map[netip.AddrPort]*alloc{}
			}
			m.v6[ap] = a
		}
	})
}

// del removes ap if it still maps to a.
func (t *clientTable) del(ap netip.AddrPort, a *alloc) {
	t.edit(ap, func(m *clientMaps) {
		if k, ok := key4(ap); ok {
			if m.v4[k] == a {
				delete(m.v4, k)
			}
		} else if m.v6[ap] == a {
			delete(m.v6, ap)
		}
	})
}

// edit publishes a copy of ap's shard changed by f.
func (t *clientTable) edit(ap netip.AddrPort, f func(*clientMaps)) {
	s := t.shard(ap)
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.m.Load()
	n := &clientMaps{}
	if old != nil {
		n.v4 = make(map[uint64]*alloc, len(old.v4)+1)
		for k, v := range old.v4 {
			n.v4[k] = v
		}
		if len(old.v6) > 0 { // nil (free) while the shard has no IPv6 client
			n.v6 = make(map[netip.AddrPort]*alloc, len(old.v6))
			for k, v := range old.v6 {
				n.v6[k] = v
			}
		}
	} else {
		n.v4 = map[uint64]*alloc{}
	}
	f(n)
	s.m.Store(n)
}

// slotTable maps worker slots (one per relay port and family) to the
// allocation holding that port. Workers read it lock-free; slots are
// set and cleared by the port allocator. Chunks are allocated on first use
// so that a wide port range costs nothing until it is used.
type slotTable struct {
	mu     sync.Mutex
	chunks []atomic.Pointer[[slotChunk]atomic.Pointer[alloc]]
}

const slotChunk = 1024

func newSlotTable(n int) *slotTable {
	return &slotTable{chunks: make([]atomic.Pointer[[slotChunk]atomic.Pointer[alloc]], (n+slotChunk-1)/slotChunk)}
}

func (t *slotTable) get(i int) *alloc {
	if i < 0 || i/slotChunk >= len(t.chunks) {
		return nil
	}
	c := t.chunks[i/slotChunk].Load()
	if c == nil {
		return nil
	}
	return c[i%slotChunk].Load()
}

func (t *slotTable) set(i int, a *alloc) {
	c := t.chunks[i/slotChunk].Load()
	if c == nil {
		t.mu.Lock()
		if c = t.chunks[i/slotChunk].Load(); c == nil {
			c = new([slotChunk]atomic.Pointer[alloc])
			t.chunks[i/slotChunk].Store(c)
		}
		t.mu.Unlock()
	}
	c[i%slotChunk].Store(a)
}
