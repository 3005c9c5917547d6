package relay

import "net/netip"

// chanEntry is one channel binding.
type chanEntry struct {
	num    uint16
	peer   netip.AddrPort
	denied bool // refused by the peer policy since a reload
}

// chanTable is an immutable snapshot of an allocation's channels and
// permissions. Small tables (the usual case: a handful of peers) are
// scanned; large ones also carry maps.
type chanTable struct {
	chans  []chanEntry
	perms  []netip.Addr
	denied map[netip.Addr]struct{} // permitted peers the policy now refuses
	byNum  map[uint16]int
	byPeer map[netip.AddrPort]int
	permOK map[netip.Addr]struct{}
}

const tableScanMax = 8

var emptyTable = &chanTable{}

func (t *chanTable) byNumber(n uint16) *chanEntry {
	if t.byNum != nil {
		if i, ok := t.byNum[n]; ok {
			return &t.chans[i]
		}
		return nil
	}
	for i := range t.chans {
		if t.chans[i].num == n {
			return &t.chans[i]
		}
	}
	return nil
}

func (t *chanTable) byPeerAddr(p netip.AddrPort) *chanEntry {
	if t.byPeer != nil {
		if i, ok := t.byPeer[p]; ok {
			return &t.chans[i]
		}
		return nil
	}
	for i := range t.chans {
		if t.chans[i].peer == p {
			return &t.chans[i]
		}
	}
	return nil
}

// permitted reports whether peer IP a has a permission (and, second
// result, whether the policy now refuses it).
func (t *chanTable) permitted(a netip.Addr) (ok, denied bool) {
	if t.permOK != nil {
		_, ok = t.permOK[a]
	} else {
		for _, p := range t.perms {
			if p == a {
				ok = true
				break
			}
		}
	}
	if ok && t.denied != nil {
		_, denied = t.denied[a]
	}
	return ok, denied
}

// rebuildLocked publishes a new snapshot from a.chans and a.perms, judging
// every peer with the current policy. The caller holds a.mu.
func (a *alloc) rebuildLocked() {
	pol := a.srv.policy.Load()
	t := &chanTable{
		chans: make([]chanEntry, 0, len(a.chans)),
		perms: make([]netip.Addr, 0, len(a.perms)),
	}
	for _, c := range a.chans {
		t.chans = append(t.chans, chanEntry{num: c.num, peer: c.peer, denied: pol.Peer(c.peer.Addr()) != reasonNone})
	}
	for _, p := range a.perms {
		t.perms = append(t.perms, p)
		if pol.Peer(p) != reasonNone {
			if t.denied == nil {
				t.denied = map[netip.Addr]struct{}{}
			}
			t.denied[p] = struct{}{}
		}
	}
	if len(t.chans) > tableScanMax {
		t.byNum = make(map[uint16]int, len(t.chans))
		t.byPeer = make(map[netip.AddrPort]int, len(t.chans))
		for i, e := range t.chans {
			t.byNum[e.num] = i
			t.byPeer[e.peer] = i
		}
	}
	if len(t.perms) > tableScanMax {
		t.permOK = make(map[netip.Addr]struct{}, len(t.perms))
		for _, p := range t.perms {
			t.permOK[p] = struct{}{}
		}
	}
	a.table.Store(t)
	a.syncFastLocked(t)
}

// setChanLocked binds channel num to peer; the caller holds a.mu.
func (a *alloc) setChanLocked(num uint16, peer netip.AddrPort) {
	for i := range a.chans {
		if a.chans[i].num == num {
			a.chans[i].peer = peer
			return
		}
	}
	a.chans = append(a.chans, chanEntry{num: num, peer: peer})
}

// delChanLocked unbinds channel num; the caller holds a.mu.
func (a *alloc) delChanLocked(num uint16) {
	for i := range a.chans {
		if a.chans[i].num == num {
			a.chans = append(a.chans[:i], a.chans[i+1:]...)
			return
		}
	}
}

// setPermLocked adds a permission for peer IP p; the caller holds a.mu.
func (a *alloc) setPermLocked(p netip.Addr) {
	for _, q := range a.perms {
		if q == p {
			return
		}
	}
	a.perms = append(a.perms, p)
}

// delPermLocked removes the permission for p; the caller holds a.mu.
func (a *alloc) delPermLocked(p netip.Addr) {
	for i, q := range a.perms {
		if q == p {
			a.perms = append(a.perms[:i], a.perms[i+1:]...)
			return
		}
	}
}
