package relay

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestKillAllocation ends one allocation of a real pion client: its
// Refresh is then answered 437 (Allocation Mismatch), the relay lists it no
// more, and the accounting line says why.
func TestKillAllocation(t *testing.T) {
	r := startRelay(t, baseConfig(t))
	peer := echoPeer(t, "udp4", "127.0.0.1:0")
	c := udpClient(t, r.udp, testUser, testPass)
	rc, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	roundTrip(t, rc, peer.LocalAddr(), []byte("before"))
	// A second client's allocation must survive.
	c2 := udpClient(t, r.udp, testUser, testPass)
	rc2, err := c2.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rc2.Close()

	if !refreshAnswered(t, c, r, testUser, testPass) {
		t.Fatal("refresh before the kill failed")
	}
	if portClosed(t, rc.LocalAddr()) {
		t.Fatalf("relayed address %s closed before the kill", rc.LocalAddr())
	}
	list := r.Allocations()
	if len(list) != 2 {
		t.Fatalf("%d allocations, want 2", len(list))
	}
	var id uint64
	for _, a := range list {
		if a.Relay == rc.LocalAddr().String() {
			id = a.ID
		}
	}
	if id == 0 {
		t.Fatalf("allocation %s not listed in %+v", rc.LocalAddr(), list)
	}
	if err := r.Kill(id); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the killed allocation to go", 5*time.Second, func() bool { return len(r.Allocations()) == 1 })
	if refreshAnswered(t, c, r, testUser, testPass) {
		t.Fatal("refresh of the killed allocation answered with success")
	}
	if !portClosed(t, rc.LocalAddr()) {
		t.Fatalf("relayed address %s still open after the kill", rc.LocalAddr())
	}
	if !strings.Contains(r.logs.String(), "reason=killed") {
		t.Errorf("no accounting line with reason=killed in:\n%s", r.logs)
	}
	roundTrip(t, rc2, peer.LocalAddr(), []byte("other allocation still relays"))
	if err := r.Kill(id); !errors.Is(err, ErrNoAllocation) {
		t.Errorf("second kill: %v, want ErrNoAllocation", err)
	}
}

// TestKillUser ends every allocation of one user, whether it
// authenticated with a static password or a REST credential, and leaves
// other users' alone.
func TestKillUser(t *testing.T) {
	r := startRelay(t, baseConfig(t))
	restU, restP := mint(t, testSecret, "bob", time.Hour)
	otherU, otherP := mint(t, testSecret, "carol", time.Hour)
	var bobClients []*heldAlloc
	for i := 0; i < 2; i++ {
		bobClients = append(bobClients, newHeldAlloc(t, r, restU, restP))
	}
	carol := newHeldAlloc(t, r, otherU, otherP)

	ids, err := r.KillUser("bob")
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 {
		t.Fatalf("killed %v, want bob's 2 allocations", ids)
	}
	testutil.WaitFor(t, "bob's allocations to go", 5*time.Second, func() bool { return len(r.Allocations()) == 1 })
	for i, b := range bobClients {
		if !portClosed(t, b.rc.LocalAddr()) {
			t.Errorf("bob's allocation %d: relayed address %s still open", i, b.rc.LocalAddr())
		}
	}
	if !refreshAnswered(t, carol.c, r, otherU, otherP) {
		t.Error("carol's refresh failed")
	}
	if portClosed(t, carol.rc.LocalAddr()) {
		t.Error("carol's relayed address closed")
	}
	if _, err := r.KillUser("bob"); !errors.Is(err, ErrNoAllocation) {
		t.Errorf("killing bob again: %v, want ErrNoAllocation", err)
	}
	if _, err := r.KillUser("ca"); !errors.Is(err, ErrNoAllocation) {
		t.Errorf("a prefix of a name matched: %v", err)
	}
}

// TestDrainRefusesNewAllocations: after Drain a new Allocate is answered
// 486 while a live allocation keeps relaying.
func TestDrainRefusesNewAllocations(t *testing.T) {
	r := startRelay(t, baseConfig(t))
	peer := echoPeer(t, "udp4", "127.0.0.1:0")
	live := newHeldAlloc(t, r, testUser, testPass)
	r.Drain()
	r.Drain() // idempotent
	if !r.Draining() {
		t.Fatal("Draining() false after Drain")
	}
	c := udpClient(t, r.udp, testUser, testPass)
	if _, err := c.Allocate(); err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("Allocate while draining: %v, want 486", err)
	}
	if n := r.metric(t, "mediaedge_relay_allocations_refused_total", "reason", "draining"); n != 1 {
		t.Errorf("refused{reason=draining} = %v, want 1", n)
	}
	roundTrip(t, live.rc, peer.LocalAddr(), []byte("still relayed while draining"))
	if !refreshAnswered(t, live.c, r, testUser, testPass) {
		t.Error("refresh of a live allocation failed while draining")
	}
	if r.Active() != 1 {
		t.Errorf("Active() = %d, want 1", r.Active())
	}
}

func TestUserMatches(t *testing.T) {
	for _, tc := range []struct {
		username, user string
		want           bool
	}{
		{"alice", "alice", true},
		{"1700000000:alice", "alice", true},
		{"1700000000:alice", "1700000000:alice", true},
		{"x:alice", "alice", false},
		{"alice2", "alice", false},
		{"1700000000:alice:b", "alice", false},
	} {
		if got := userMatches(tc.username, tc.user); got != tc.want {
			t.Errorf("userMatches(%q, %q) = %v, want %v", tc.username, tc.user, got, tc.want)
		}
	}
}

// heldAlloc is a pion client with one allocation on a test relay.
type heldAlloc struct {
	c  *turn.Client
	rc net.PacketConn
}

func newHeldAlloc(t *testing.T, r *testRelay, user, pass string) *heldAlloc {
	t.Helper()
	c := udpClient(t, r.udp, user, pass)
	rc, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate as %s: %v", user, err)
	}
	t.Cleanup(func() { rc.Close() })
	return &heldAlloc{c: c, rc: rc}
}

// refreshAnswered sends an authenticated Refresh on c's connection and
// reports whether it succeeded within a second. pion answers nothing to a
// Refresh of an allocation it does not know (RFC 8656 would have 437), so
// a killed allocation shows as a Refresh that times out.
func refreshAnswered(t *testing.T, c *turn.Client, r *testRelay, user, pass string) bool {
	t.Helper()
	to := net.UDPAddrFromAddrPort(r.udp)
	do := func(attrs ...stun.Setter) (*stun.Message, error) {
		m, err := stun.Build(append([]stun.Setter{stun.TransactionID, stun.NewType(stun.MethodRefresh, stun.ClassRequest)}, attrs...)...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		res, err := c.PerformTransactionWithContext(m, to, false, ctx)
		if err != nil {
			return nil, err
		}
		return res.Msg, nil
	}
	res, err := do()
	if err != nil {
		return false
	}
	var nonce stun.Nonce
	if err := nonce.GetFrom(res); err != nil {
		t.Fatalf("no nonce in the 401: %v", err)
	}
	res, err = do(stun.NewUsername(user), stun.NewRealm(testRealm), nonce, stun.NewLongTermIntegrity(user, testRealm, pass))
	return err == nil && res.Type.Class == stun.ClassSuccessResponse
}

// portClosed reports whether the UDP port at addr is closed: a datagram
// sent there from a connected socket draws ICMP port unreachable, which
// Linux reports as ECONNREFUSED on the next read.
func portClosed(t *testing.T, addr net.Addr) bool {
	t.Helper()
	c, err := net.Dial("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 3; i++ {
		if _, err := c.Write([]byte("probe")); err != nil {
			return errors.Is(err, syscall.ECONNREFUSED)
		}
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(make([]byte, 64)); errors.Is(err, syscall.ECONNREFUSED) {
			return true
		}
	}
	return false
}

// TestKillTCPAllocation ends an RFC 6062 TCP allocation: its relayed
// listener stops accepting peers.
func TestKillTCPAllocation(t *testing.T) {
	r := startRelay(t, baseConfig(t))
	c, _ := tcpClient(t, r.tcp, testUser, testPass)
	alloc, err := c.AllocateTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer alloc.Close()
	relayed := alloc.Addr().String()
	pc, err := net.DialTimeout("tcp", relayed, 2*time.Second)
	if err != nil {
		t.Fatalf("relayed TCP address %s refuses peers before the kill: %v", relayed, err)
	}
	pc.Close()
	ids, err := r.KillUser(testUser)
	if err != nil || len(ids) != 1 {
		t.Fatalf("KillUser: %v %v", ids, err)
	}
	testutil.WaitFor(t, "the TCP allocation to go", 5*time.Second, func() bool { return len(r.Allocations()) == 0 })
	if pc, err := net.DialTimeout("tcp", relayed, 2*time.Second); err == nil {
		pc.Close()
		t.Fatalf("relayed TCP address %s still accepts peers after the kill", relayed)
	}
	if !strings.Contains(r.logs.String(), "reason=killed") {
		t.Error("no accounting line with reason=killed")
	}
}
