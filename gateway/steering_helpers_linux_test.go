package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
)

// steeredCount sums the workers' steered datagrams.
func steeredCount(g *Gateway) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	var n uint64
	for _, w := range g.workers {
		n += w.stats.steered.Load()
	}
	return n
}

// dropCount sums the workers' drops for reason r on both legs.
func dropCount(g *Gateway, r reason) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	var n uint64
	for _, w := range g.workers {
		n += w.stats.drops[legInternal][r].Load() + w.stats.drops[legCloud][r].Load()
	}
	return n
}

// packetsIn sums the packets authenticated from both legs' peers.
func packetsIn(g *Gateway) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	var n uint64
	for _, w := range g.workers {
		n += w.stats.packets[legInternal][0].Load() + w.stats.packets[legCloud][0].Load()
	}
	return n
}

// collector reads every datagram one peer socket receives until stop,
// keyed by the gateway address it came from.
type collector struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  map[netip.AddrPort][][]byte
	n    int
	done chan struct{}
}

func newCollector(t *testing.T, conn *net.UDPConn) *collector {
	_ = conn.SetReadBuffer(16 << 20)
	c := &collector{conn: conn, got: map[netip.AddrPort][][]byte{}, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // ECONNREFUSED from an earlier send: go on
			}
			c.mu.Lock()
			c.got[netip.AddrPortFrom(from.Addr().Unmap(), from.Port())] = append(c.got[netip.AddrPortFrom(from.Addr().Unmap(), from.Port())], bytes.Clone(buf[:n]))
			c.n++
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close(); <-c.done })
	return c
}
func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
func (c *collector) take(from netip.AddrPort) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got[from]
}

// bpftoolLists reports whether `bpftool <what> show` lists an object of
// program id (prog: the program; link: an sk_lookup link to it).
func bpftoolLists(t testing.TB, what string, id uint32) bool {
	t.Helper()
	out, err := exec.Command("bpftool", "-j", what, "show").Output()
	if err != nil {
		t.Fatalf("bpftool %s show: %v", what, err)
	}
	var objs []struct {
		ID         uint32 `json:"id"`
		ProgID     uint32 `json:"prog_id"`
		AttachType string `json:"attach_type"`
	}
	if err := json.Unmarshal(out, &objs); err != nil {
		t.Fatalf("bpftool %s show: %v\n%s", what, err, out)
	}
	for _, o := range objs {
		if what == "prog" && o.ID == id || what == "link" && o.ProgID == id && o.AttachType == "sk_lookup" {
			return true
		}
	}
	return false
}

// dropsOf lists the non-zero drop counters, for failure messages.
func dropsOf(g *Gateway) map[string]uint64 {
	m := map[string]uint64{}
	for r := reason(0); r < numReasons; r++ {
		if d := dropCount(g, r); d != 0 {
			m[r.String()] = d
		}
	}
	return m
}

// netnsChildEnv marks a test binary re-run by inProcessNetns.
const netnsChildEnv = "MEDIAEDGE_GATEWAY_NETNS_CHILD"

// inProcessNetns runs fn in a copy of this test binary started in a new
// network namespace of its own (lo up), and fails when the copy fails.
// Unlike testutil.InNetns, where one thread is in the namespace, every
// thread of the copy is: a gateway's workers open sockets (the raw
// senders) on their own threads. It skips without root.
func inProcessNetns(t *testing.T, fn func(lo netlink.Link)) {
	t.Helper()
	if os.Getenv(netnsChildEnv) == "1" {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			t.Fatal(err)
		}
		fn(lo)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (a network namespace, CAP_BPF, CAP_NET_ADMIN)")
	}
	args := []string{"-test.run=^" + t.Name() + "$", "-test.count=1", "-test.v"}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), netnsChildEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	out, err := cmd.CombinedOutput()
	switch {
	case err != nil:
		t.Fatalf("in a new network namespace: %v\n%s", err, out)
	case bytes.Contains(out, []byte("--- SKIP")):
		t.Skipf("in a new network namespace:\n%s", out)
	case testing.Verbose():
		t.Logf("in a new network namespace:\n%s", out)
	}
}
