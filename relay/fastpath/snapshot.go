package fastpath

// Snapshot holds the counters of every entry in the kernel, read in a few
// batched system calls (Forwarder.Snapshot) instead of two lookups per
// entry. Its memory is kept from one read to the next. The zero value is
// ready to use; a Snapshot is not safe for concurrent use.
type Snapshot struct {
	c2pKeys []turnfwdC2pKey
	p2cKeys []turnfwdP2cKey
	vals    []turnfwdFwdVal
	c2p     map[turnfwdC2pKey]dirCounts
	p2c     map[turnfwdP2cKey]dirCounts
}

// dirCounts are one direction's counters of one entry.
type dirCounts struct{ packets, bytes, dropped uint64 }

// snapshotChunk is the number of entries one batched lookup returns at
// most: a hash map bucket never holds that many, so the kernel never
// refuses a chunk as too small (ENOSPC).
const snapshotChunk = 4096

// Counters returns e's counters as of the last read, and false when e was
// not in the kernel then (both directions are needed).
func (s *Snapshot) Counters(e Entry) (Counters, bool) {
	if !e.valid() {
		return Counters{}, false
	}
	up, ok1 := s.c2p[e.c2pKey()]
	down, ok2 := s.p2c[e.p2cKey()]
	if !ok1 || !ok2 {
		return Counters{}, false
	}
	return Counters{
		ToPeerPackets: up.packets, ToPeerBytes: up.bytes, ToPeerDropped: up.dropped,
		ToClientPackets: down.packets, ToClientBytes: down.bytes, ToClientDropped: down.dropped,
	}, true
}

// Len is the number of entries (client-side halves) in the snapshot.
func (s *Snapshot) Len() int { return len(s.c2p) }
