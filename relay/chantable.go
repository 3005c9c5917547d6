package relay

import "net/netip"

// chanEntry is one channel binding (fields ordered for size: 40 bytes).
type chanEntry struct {
	peer   netip.AddrPort
	num    uint16
	denied bool // refused by the peer policy since a reload
}

// permEntry is one permission.
type permEntry struct {
	peer   netip.Addr
	denied bool // refused by the peer policy since a reload
}

// chanTable is an immutable snapshot of an allocation's channels and
// permissions, the only copy the relay keeps of them: an edit copies the
// entries, changes them and publishes a new table. Small tables (the usual
// case: a handful of peers) are scanned; large ones also carry an index.
// An idle call holds one channel and one permission, which live inside
// the table itself (one heap object per allocation).
type chanTable struct {
	chans []chanEntry
	perms []permEntry
	idx   *tableIndex // nil up to tableScanMax entries of each kind

	chan1 [1]chanEntry // chans when there is one
	perm1 [1]permEntry // perms when there is one
}

// tableIndex holds the maps of a large chanTable.
type tableIndex struct {
	byNum  map[uint16]int
	byPeer map[netip.AddrPort]int
	perm   map[netip.Addr]int
}

const tableScanMax = 8

var emptyTable = &chanTable{}

func (t *chanTable) byNumber(n uint16) *chanEntry {
	if t.idx != nil && t.idx.byNum != nil {
		if i, ok := t.idx.byNum[n]; ok {
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
	if t.idx != nil && t.idx.byPeer != nil {
		if i, ok := t.idx.byPeer[p]; ok {
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
	if t.idx != nil && t.idx.perm != nil {
		if i, ok := t.idx.perm[a]; ok {
			return true, t.perms[i].denied
		}
		return false, false
	}
	for i := range t.perms {
		if t.perms[i].peer == a {
			return true, t.perms[i].denied
		}
	}
	return false, false
}

// tableDraft is an allocation's channels and permissions being edited
// (copies, owned by the editor).
type tableDraft struct {
	chans []chanEntry
	perms []permEntry
}

// draft copies t's entries for editing.
func (t *chanTable) draft() *tableDraft {
	return &tableDraft{chans: append([]chanEntry(nil), t.chans...), perms: append([]permEntry(nil), t.perms...)}
}

// setChan binds channel num to peer.
func (d *tableDraft) setChan(num uint16, peer netip.AddrPort) {
	for i := range d.chans {
		if d.chans[i].num == num {
			d.chans[i].peer = peer
			return
		}
	}
	d.chans = append(d.chans, chanEntry{num: num, peer: peer})
}

// delChan unbinds channel num.
func (d *tableDraft) delChan(num uint16) {
	for i := range d.chans {
		if d.chans[i].num == num {
			d.chans = append(d.chans[:i], d.chans[i+1:]...)
			return
		}
	}
}

// setPerm adds a permission for peer IP p.
func (d *tableDraft) setPerm(p netip.Addr) {
	for _, q := range d.perms {
		if q.peer == p {
			return
		}
	}
	d.perms = append(d.perms, permEntry{peer: p})
}

// delPerm removes the permission for p.
func (d *tableDraft) delPerm(p netip.Addr) {
	for i, q := range d.perms {
		if q.peer == p {
			d.perms = append(d.perms[:i], d.perms[i+1:]...)
			return
		}
	}
}

// editLocked applies f to a draft of the allocation's table and publishes
// the result; nil f republishes the table as it is. Either way every peer
// is judged again with the current policy. The caller holds a.mu.
func (a *alloc) editLocked(f func(d *tableDraft)) {
	d := a.table.Load().draft()
	if f != nil {
		f(d)
	}
	t := newChanTable(d, a.srv.policy.Load())
	a.table.Store(t)
	a.syncFastLocked(t)
}

// newChanTable builds the snapshot of d, judging every peer with pol.
func newChanTable(d *tableDraft, pol *peerPolicy) *chanTable {
	if len(d.chans) == 0 && len(d.perms) == 0 {
		return emptyTable
	}
	t := &chanTable{}
	switch len(d.chans) {
	case 0:
	case 1:
		t.chans = t.chan1[:]
	default:
		t.chans = make([]chanEntry, len(d.chans))
	}
	switch len(d.perms) {
	case 0:
	case 1:
		t.perms = t.perm1[:]
	default:
		t.perms = make([]permEntry, len(d.perms))
	}
	for i, c := range d.chans {
		t.chans[i] = chanEntry{num: c.num, peer: c.peer, denied: pol.Peer(c.peer.Addr()) != reasonNone}
	}
	for i, p := range d.perms {
		t.perms[i] = permEntry{peer: p.peer, denied: pol.Peer(p.peer) != reasonNone}
	}
	if len(t.chans) > tableScanMax || len(t.perms) > tableScanMax {
		t.idx = &tableIndex{}
	}
	if len(t.chans) > tableScanMax {
		t.idx.byNum = make(map[uint16]int, len(t.chans))
		t.idx.byPeer = make(map[netip.AddrPort]int, len(t.chans))
		for i, e := range t.chans {
			t.idx.byNum[e.num] = i
			t.idx.byPeer[e.peer] = i
		}
	}
	if len(t.perms) > tableScanMax {
		t.idx.perm = make(map[netip.Addr]int, len(t.perms))
		for i, p := range t.perms {
			t.idx.perm[p.peer] = i
		}
	}
	return t
}
