package load

// seqTracker does exact loss, duplicate and reorder accounting for one
// stream whose packets carry their send index. Not safe for concurrent use.
type seqTracker struct {
	seen    []uint64 // bitset over send indexes
	n       int
	highest int64 // highest index received, -1 before the first
	unique  int64
	dup     int64
	reord   int64
}

func newSeqTracker(n int) *seqTracker {
	return &seqTracker{seen: make([]uint64, (n+63)/64), n: n, highest: -1}
}

// add records index k; it reports false for an index outside the stream.
func (s *seqTracker) add(k int) bool {
	if k < 0 || k >= s.n {
		return false
	}
	w, bit := k/64, uint64(1)<<(k%64)
	if s.seen[w]&bit != 0 {
		s.dup++
		return true
	}
	s.seen[w] |= bit
	s.unique++
	if int64(k) < s.highest {
		s.reord++
	} else {
		s.highest = int64(k)
	}
	return true
}

// has reports whether index k was received.
func (s *seqTracker) has(k int) bool {
	return k >= 0 && k < s.n && s.seen[k/64]&(1<<(k%64)) != 0
}
