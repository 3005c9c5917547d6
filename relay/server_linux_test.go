package relay

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

func mint(t testing.TB, secret, user string, ttl time.Duration) (string, string) {
	t.Helper()
	u, p, err := MintCredentials([]byte(secret), user, ttl, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return u, p
}

// allocates reports whether user/pass can allocate on r over UDP.
func allocates(t *testing.T, r *testRelay, user, pass string) bool {
	t.Helper()
	c := udpClient(t, r.udp, user, pass)
	rc, err := c.Allocate()
	if err != nil {
		return false
	}
	rc.Close()
	return true
}

func TestRESTCredentialsAndRotation(t *testing.T) {
	const newSecret = "fedcba9876543210-second-secret"
	cfg := baseConfig(t)
	r := startRelay(t, cfg)
	oldU, oldP := mint(t, testSecret, "carol", time.Hour)
	if !allocates(t, r, oldU, oldP) {
		t.Fatal("REST credential of the configured secret refused")
	}
	if allocates(t, r, oldU, "wrong-password") {
		t.Fatal("wrong password accepted")
	}
	newU, newP := mint(t, newSecret, "carol", time.Hour)
	if allocates(t, r, newU, newP) {
		t.Fatal("credential of an unknown secret accepted")
	}

	// Overlap: both secrets in force.
	both := cfg
	both.Auth.SecretFiles = []config.SecretFile{{}}
	both.Auth.SecretFiles[0].Set("secret", []byte(newSecret+"\n"+testSecret+"\n"))
	if err := r.Reload(context.Background(), both); err != nil {
		t.Fatal(err)
	}
	if !allocates(t, r, oldU, oldP) || !allocates(t, r, newU, newP) {
		t.Fatal("during the overlap both secrets must work")
	}
	// An allocation made with the old secret lives on across the removal.
	c := udpClient(t, r.udp, oldU, oldP)
	rc, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// The clients of allocates() deallocate without waiting, and a
	// deallocation signed with the old secret fails once it is removed:
	// let those finish first.
	testutil.WaitFor(t, "the overlap's allocations to end", 3*time.Second, func() bool { return len(r.Allocations()) == 1 })

	only := cfg
	only.Auth.SecretFiles = []config.SecretFile{{}}
	only.Auth.SecretFiles[0].Set("secret", []byte(newSecret))
	if err := r.Reload(context.Background(), only); err != nil {
		t.Fatal(err)
	}
	if allocates(t, r, oldU, oldP) {
		t.Fatal("old secret still works after its removal")
	}
	if !allocates(t, r, newU, newP) {
		t.Fatal("new secret refused after the old one was removed")
	}
	// The clients of allocates() deallocate without waiting.
	testutil.WaitFor(t, "one allocation left", 3*time.Second, func() bool { return len(r.Allocations()) == 1 })
	// The next authenticated request of the old allocation is refused.
	m := authedRequest(t, c, r.udp, oldU, oldP, stun.MethodRefresh)
	if got := errorCode(m); got != 401 {
		t.Errorf("refresh with a removed secret: error %d, want 401", got)
	}
	if got := r.metric(t, "mediaedge_relay_auth_failures_total", "reason", authBadIntegrity); got < 1 {
		t.Errorf("bad_integrity failures = %v", got)
	}
	if strings.Contains(r.logs.String(), testSecret) || strings.Contains(r.logs.String(), oldP) {
		t.Error("a secret or password appears in the logs")
	}
}

func TestAuthFailureReasons(t *testing.T) {
	r := startRelay(t, baseConfig(t))
	if allocates(t, r, "mallory", "x") {
		t.Fatal("unknown user allocated")
	}
	expU := "1000:dave" // expired in 1970
	if allocates(t, r, expU, RESTPassword([]byte(testSecret), expU)) {
		t.Fatal("expired credential allocated")
	}
	if allocates(t, r, testUser, "wrong") {
		t.Fatal("wrong password allocated")
	}
	for _, reason := range []string{authUnknownUser, authExpired, authBadIntegrity} {
		if got := r.metric(t, "mediaedge_relay_auth_failures_total", "reason", reason); got < 1 {
			t.Errorf("auth failures %s = %v", reason, got)
		}
	}
	logs := r.logs.String()
	for _, want := range []string{"reason=unknown_user", "reason=expired", "reason=bad_integrity"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q", want)
		}
	}
	if strings.Contains(logs, "wrong") {
		t.Error("a password appears in the logs")
	}
}

func TestExpiryMidAllocation(t *testing.T) {
	r := startRelay(t, baseConfig(t))
	u, p := mint(t, testSecret, "erin", 2*time.Second)
	c := udpClient(t, r.udp, u, p)
	rc, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got := errorCode(authedRequest(t, c, r.udp, u, p, stun.MethodRefresh)); got != 0 {
		t.Fatalf("refresh before expiry: error %d", got)
	}
	time.Sleep(time.Until(time.Unix(mustExpiry(t, u), 0)) + 100*time.Millisecond)
	peer := xorPeer{addr: netip.MustParseAddr("127.0.0.1"), port: 9}
	if got := errorCode(authedRequest(t, c, r.udp, u, p, stun.MethodCreatePermission, peer)); got != 401 {
		t.Errorf("CreatePermission after expiry: error %d, want 401", got)
	}
	if got := errorCode(authedRequest(t, c, r.udp, u, p, stun.MethodRefresh)); got != 401 {
		t.Errorf("refresh after expiry: error %d, want 401", got)
	}
}

func mustExpiry(t testing.TB, u string) int64 {
	exp, _, ok := parseRESTUsername(u)
	if !ok {
		t.Fatalf("not a REST user name: %q", u)
	}
	return exp.Unix()
}

func TestQuotas(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Limits.MaxAllocationsPerUser = 2
	cfg.Limits.MaxAllocations = 3
	r := startRelay(t, cfg)
	var held []net.PacketConn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	alloc := func(user, pass string) error {
		c := udpClient(t, r.udp, user, pass)
		rc, err := c.Allocate()
		if err == nil {
			held = append(held, rc)
		}
		return err
	}
	u1, p1 := mint(t, testSecret, "frank", time.Hour)
	u2, p2 := mint(t, testSecret, "grace", time.Hour)
	for i := 0; i < 2; i++ {
		if err := alloc(u1, p1); err != nil {
			t.Fatalf("allocation %d of frank: %v", i, err)
		}
	}
	err := alloc(u1, p1)
	if err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("third allocation of frank: %v, want 486", err)
	}
	if err := alloc(u2, p2); err != nil {
		t.Fatalf("grace: %v", err)
	}
	if err := alloc(u2, p2); err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("allocation over the total: %v, want 486", err)
	}
	if r.metric(t, "mediaedge_relay_allocations_refused_total", "reason", "quota_user") < 1 ||
		r.metric(t, "mediaedge_relay_allocations_refused_total", "reason", "quota_total") < 1 {
		t.Error("quota refusals not counted")
	}
	// Raising the quota on reload admits more without touching the live ones.
	cfg.Limits.MaxAllocationsPerUser, cfg.Limits.MaxAllocations = 5, 10
	if err := r.Reload(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if err := alloc(u1, p1); err != nil {
		t.Fatalf("after raising the quota: %v", err)
	}
	if n := len(r.Allocations()); n != 4 {
		t.Errorf("%d allocations, want 4", n)
	}
}

func TestIPv6Allocation(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Listeners = []ListenerConfig{{Transport: "udp", Addr: config.AddrPort{AddrPort: netip.MustParseAddrPort("[::1]:0")}}}
	cfg.RelayIPv6 = "::1"
	cfg.AllowedPeers = []config.Prefix{{Prefix: netip.MustParsePrefix("::1/128")}}
	r := startRelay(t, cfg)
	peer := echoPeer(t, "udp6", "[::1]:0")
	c := udpClient(t, r.udp, testUser, testPass)
	rc, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if ra := rc.LocalAddr().(*net.UDPAddr); ra.IP.To4() != nil {
		t.Fatalf("relayed address %s is not IPv6", ra)
	}
	for i := 0; i < 5; i++ {
		roundTrip(t, rc, peer.LocalAddr(), []byte("over ipv6"))
	}
}

func TestTCPClientAndTCPAllocation(t *testing.T) {
	r := startRelay(t, baseConfig(t))
	// A TCP peer that echoes one line.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 64)
			n, _ := c.Read(buf)
			c.Write(buf[:n])
			c.Close()
		}
	}()
	defer func() { ln.Close(); <-done }()

	c, _ := tcpClient(t, r.tcp, testUser, testPass)
	alloc, err := c.AllocateTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer alloc.Close()
	peerAddr := ln.Addr().(*net.TCPAddr)
	conn, err := alloc.Dial("tcp", peerAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("tcp relay")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "tcp relay" {
		t.Fatalf("echo over the TCP allocation: %q, %v", buf[:n], err)
	}
	// The echo can come back before the relay counted what it wrote to
	// the peer: wait for the count (generous bound) before checking.
	var as []AllocationInfo
	testutil.WaitFor(t, "the bytes to the peer to be counted", 10*time.Second, func() bool {
		as = r.Allocations()
		return len(as) == 1 && as[0].BytesToPeer >= 9
	})
	if len(as) != 1 || as[0].RelayProtocol != "tcp" || as[0].Transport != "tcp" || as[0].BytesToPeer != 9 {
		t.Errorf("allocations = %+v", as)
	}
	// Connect to a refused peer is refused with 403.
	if _, err := alloc.Dial("tcp", "10.0.0.1:80"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("Connect to a private peer: %v, want 403", err)
	}
}

func TestTCPAllocationOverUDPRefused(t *testing.T) {
	r := startRelay(t, baseConfig(t))
	c := udpClient(t, r.udp, testUser, testPass)
	if _, err := c.AllocateTCP(); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("TCP allocation over UDP: %v, want 400", err)
	}
}

func TestReloadRefusesRestartOnlyChanges(t *testing.T) {
	cfg := baseConfig(t)
	r := startRelay(t, cfg)
	changed := cfg
	changed.Realm = "other"
	changed.Ports = config.PortRange{Min: 30000, Max: 30010}
	err := r.Reload(context.Background(), changed)
	if !errors.Is(err, ErrRestartNeeded) || !strings.Contains(err.Error(), "realm") || !strings.Contains(err.Error(), "ports") {
		t.Fatalf("reload = %v", err)
	}
	if !allocates(t, r, testUser, testPass) {
		t.Fatal("relay broken after a refused reload")
	}
}

func TestReloadPolicyAppliesToLiveChannels(t *testing.T) {
	cfg := baseConfig(t)
	r := startRelay(t, cfg)
	peer := echoPeer(t, "udp4", "127.0.0.1:0")
	c := udpClient(t, r.udp, testUser, testPass)
	rc, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	roundTrip(t, rc, peer.LocalAddr(), []byte("before"))
	denied := cfg
	denied.AllowedPeers = nil
	if err := r.Reload(context.Background(), denied); err != nil {
		t.Fatal(err)
	}
	rc.WriteTo([]byte("after"), peer.LocalAddr())
	_ = rc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 64)
	if n, _, err := rc.ReadFrom(buf); err == nil {
		t.Fatalf("relayed %q to a peer the reloaded policy refuses", buf[:n])
	}
	// Nothing came back within the read deadline; the drop may still be
	// on its way to the counter on a busy machine.
	testutil.WaitFor(t, "the peer_denied drop", 10*time.Second, func() bool {
		return r.metric(t, "mediaedge_relay_drops_total", "cause", "peer_denied") >= 1
	})
	if len(r.Allocations()) != 1 {
		t.Error("reload dropped the allocation")
	}
}
