package testutil

import (
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// InNetns runs fn on a thread in a new network namespace whose lo is up
// (fn gets it): sockets fn opens stay in that namespace, which has no name
// and goes with them. It skips the test when no namespace can be made
// (not root). The thread enters the namespace and leaves it before it is
// unlocked; should it fail to leave, it stays locked and Go ends it with
// the test's goroutine.
func InNetns(t testing.TB, fn func(lo netlink.Link)) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // and switch this thread to it
	if err != nil {
		runtime.UnlockOSThread()
		t.Skipf("new network namespace: %v", err)
	}
	defer func() {
		ns.Close()
		if err := netns.Set(orig); err != nil {
			t.Errorf("returning to the original network namespace: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	fn(lo)
}
