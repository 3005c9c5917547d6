package fastpath

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// capUse is one allocation's or user's pair of kernel buckets.
type capUse struct {
	entries int
	bitrate uint64
	base    uint32 // users only: the pair's first key
}

// holdCapLocked makes sure e's allocation has its two buckets for
// e.Bitrate, and e.User its two for e.UserBitrate, and counts e among
// their users; it returns the user's bucket base (0 without a per-user
// cap). A new bitrate replaces the buckets with full ones, as the
// user-space relay does on a reload that changes the cap. Adding an entry
// twice counts it twice; the relay never does. The caller holds f.mu.
func (f *Forwarder) holdCapLocked(e Entry) (uint32, error) {
	if e.Bitrate != 0 {
		u := f.caps[e.Relay]
		if u.entries == 0 || u.bitrate != e.Bitrate {
			if err := f.setBuckets(bucketID(e.Relay, 0), e.Bitrate); err != nil {
				return 0, err
			}
			u.bitrate = e.Bitrate
		}
		u.entries++
		f.caps[e.Relay] = u
	}
	if e.UserBitrate == 0 {
		return 0, nil
	}
	u, ok := f.userCaps[e.User]
	if !ok {
		switch {
		case len(f.freeUsers) > 0:
			u.base = f.freeUsers[len(f.freeUsers)-1]
			f.freeUsers = f.freeUsers[:len(f.freeUsers)-1]
		default:
			u.base = userBucketBase + 2*f.nextUser
			f.nextUser++
		}
	}
	if u.entries == 0 || u.bitrate != e.UserBitrate {
		if err := f.setBuckets(u.base, e.UserBitrate); err != nil {
			if u.entries == 0 {
				f.freeUsers = append(f.freeUsers, u.base)
			}
			f.releaseAllocCapLocked(e)
			return 0, err
		}
		u.bitrate = e.UserBitrate
	}
	u.entries++
	f.userCaps[e.User] = u
	return u.base, nil
}

// setBuckets writes a full pair of buckets for bitrate at keys base and
// base+1 (the two directions; bucketID(relay, 0) + 1 is bucketID(relay, 1)).
func (f *Forwarder) setBuckets(base uint32, bitrate uint64) error {
	b := newBucket(bitrate)
	for dir := range uint32(2) {
		if err := f.objs.Buckets.Update(base+dir, &b, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("fastpath: adding bucket: %w", err)
		}
	}
	return nil
}

// releaseCapLocked undoes holdCapLocked; the last entry of an allocation
// or a user frees its buckets. The caller holds f.mu.
func (f *Forwarder) releaseCapLocked(e Entry) {
	f.releaseAllocCapLocked(e)
	if e.UserBitrate == 0 {
		return
	}
	u, ok := f.userCaps[e.User]
	if !ok {
		return
	}
	if u.entries--; u.entries > 0 {
		f.userCaps[e.User] = u
		return
	}
	delete(f.userCaps, e.User)
	for dir := range uint32(2) {
		_ = f.objs.Buckets.Delete(u.base + dir)
	}
	f.freeUsers = append(f.freeUsers, u.base)
}

func (f *Forwarder) releaseAllocCapLocked(e Entry) {
	if e.Bitrate == 0 {
		return
	}
	u := f.caps[e.Relay]
	if u.entries--; u.entries > 0 {
		f.caps[e.Relay] = u
		return
	}
	delete(f.caps, e.Relay)
	for dir := range uint32(2) {
		_ = f.objs.Buckets.Delete(bucketID(e.Relay, dir))
	}
}
