package relay

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
)

// clientTable maps a UDP listener's client addresses to allocations. Reads
// (one per ChannelData datagram) are lock-free: each shard publishes an
// immutable map that writers copy, change and swap under the shard's mutex.
// Sharding keeps a copy small when there are thousands of allocations
// (ten entries per shard at 10,000 allocations).
type clientTable struct {
	shards [1024]clientShard
}

type clientShard struct {
	mu sync.Mutex
	m  atomic.Pointer[map[netip.AddrPort]*alloc]
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
	return (*m)[ap]
}

func (t *clientTable) put(ap netip.AddrPort, a *alloc) {
	s := t.shard(ap)
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.m.Load()
	n := make(map[netip.AddrPort]*alloc, 1+lenOf(old))
	if old != nil {
		for k, v := range *old {
			n[k] = v
		}
	}
	n[ap] = a
	s.m.Store(&n)
}

// del removes ap if it still maps to a.
func (t *clientTable) del(ap netip.AddrPort, a *alloc) {
	s := t.shard(ap)
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.m.Load()
	if old == nil || (*old)[ap] != a {
		return
	}
	n := make(map[netip.AddrPort]*alloc, len(*old))
	for k, v := range *old {
		if k != ap {
			n[k] = v
		}
	}
	s.m.Store(&n)
}

func lenOf(m *map[netip.AddrPort]*alloc) int {
	if m == nil {
		return 0
	}
	return len(*m)
}

// slotTable maps poller slots (one per relay port and family) to the
// allocation holding that port. The poller reads it lock-free; slots are
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
