package relay

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/config"
	metest "github.com/mediaedge/mediaedge/internal/testutil"
)

const (
	testRealm  = "test.realm"
	testUser   = "alice"
	testPass   = "alice-password"
	testSecret = "0123456789abcdef-first-secret"
)

// testRelay is a started Server on loopback with port 0 listeners.
type testRelay struct {
	*Server
	reg  *prometheus.Registry
	logs *metest.SyncBuffer
	udp  netip.AddrPort
	tcp  netip.AddrPort
	cfg  Config
}

// baseConfig is a loopback relay with one static user and one REST secret,
// admitting loopback peers.
func baseConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.Enabled = true
	cfg.Realm = testRealm
	cfg.Listeners = []ListenerConfig{
		{Transport: "udp", Addr: config.AddrPort{AddrPort: netip.MustParseAddrPort("127.0.0.1:0")}},
		{Transport: "tcp", Addr: config.AddrPort{AddrPort: netip.MustParseAddrPort("127.0.0.1:0")}},
	}
	cfg.UDPShards = 2
	cfg.RelayIP = "127.0.0.1"
	cfg.Ports = config.PortRange{Min: 40000, Max: 59999}
	cfg.Auth.UsersFile.Set("users", []byte(testUser+":"+testPass+"\n"))
	cfg.Auth.SecretFiles = []config.SecretFile{{}}
	cfg.Auth.SecretFiles[0].Set("secret", []byte(testSecret))
	cfg.AllowedPeers = []config.Prefix{{Prefix: netip.MustParsePrefix("127.0.0.0/8")}}
	return cfg
}

func startRelay(t testing.TB, cfg Config) *testRelay {
	t.Helper()
	return startRelayWith(t, cfg, nil)
}

// startRelayWith is startRelay with hook applied to the Server between New
// and Start (test stand-ins for func fields).
func startRelayWith(t testing.TB, cfg Config, hook func(*Server)) *testRelay {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &metest.SyncBuffer{}
	reg := prometheus.NewRegistry()
	s, err := New(cfg, component.Deps{
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	if hook != nil {
		hook(s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r := &testRelay{Server: s, reg: reg, logs: logs, cfg: cfg}
	if a := s.UDPAddrs(); len(a) > 0 {
		r.udp = a[0]
	}
	if a := s.TCPAddrs(); len(a) > 0 {
		r.tcp = a[0]
	}
	return r
}

// counter reads a counter or gauge value with the given labels.
func (r *testRelay) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

var _ = testutil.ToFloat64 // keep the import for table tests that use it

// udpClient is a pion/turn client over UDP to r.
func udpClient(t testing.TB, server netip.AddrPort, user, pass string) *turn.Client {
	t.Helper()
	c, _ := udpClientConn(t, server, user, pass)
	return c
}

// udpClientConn is udpClient that also returns the client's socket, for
// tests that write raw datagrams (ChannelData) from the client's address.
func udpClientConn(t testing.TB, server netip.AddrPort, user, pass string) (*turn.Client, net.PacketConn) {
	t.Helper()
	network, laddr := "udp4", "127.0.0.1:0"
	if server.Addr().Is6() {
		network, laddr = "udp6", "[::1]:0"
	}
	conn, err := net.ListenPacket(network, laddr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server.String(),
		TURNServerAddr: server.String(),
		Conn:           conn,
		Username:       user,
		Password:       pass,
		Realm:          testRealm,
		LoggerFactory:  quietLogs{},
		RTO:            200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		conn.Close()
	})
	return c, conn
}

// tcpClient is a pion/turn client over TCP to r.
func tcpClient(t testing.TB, server netip.AddrPort, user, pass string) (*turn.Client, net.Conn) {
	t.Helper()
	nc, err := net.Dial("tcp", server.String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: server.String(),
		TURNServerAddr: server.String(),
		Conn:           turn.NewSTUNConn(nc),
		Username:       user,
		Password:       pass,
		Realm:          testRealm,
		LoggerFactory:  quietLogs{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		nc.Close()
	})
	return c, nc
}

// echoPeer is a UDP echo server on loopback; it stops with the test.
func echoPeer(t testing.TB, network, addr string) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	uc := pc.(*net.UDPConn)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := uc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = uc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		uc.Close()
		<-done
	})
	return uc
}

// roundTrip sends msg to peer through relayConn and waits for the echo.
func roundTrip(t testing.TB, relayConn net.PacketConn, peer net.Addr, msg []byte) {
	t.Helper()
	if _, err := relayConn.WriteTo(msg, peer); err != nil {
		t.Fatalf("write to %s: %v", peer, err)
	}
	_ = relayConn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 2048)
	for {
		n, from, err := relayConn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no echo from %s: %v", peer, err)
		}
		if from.String() == peer.String() && bytes.Equal(buf[:n], msg) {
			return
		}
	}
}

// quietLogs silences pion's client logs in tests.
type quietLogs struct{}

func (quietLogs) NewLogger(string) logging.LeveledLogger {
	return logging.NewDefaultLeveledLoggerForScope("", logging.LogLevelDisabled, os.Stderr)
}

// authedRequest performs an authenticated STUN request with method and
// attrs on c's connection (learning the nonce from the first 401) and
// returns the response.
func authedRequest(t testing.TB, c *turn.Client, server netip.AddrPort, user, pass string, method stun.Method, attrs ...stun.Setter) *stun.Message {
	t.Helper()
	to := net.UDPAddrFromAddrPort(server)
	build := func(extra ...stun.Setter) *stun.Message {
		s := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, attrs...)
		s = append(s, extra...)
		m, err := stun.Build(s...)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	res, err := c.PerformTransaction(build(), to, false)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	var nonce stun.Nonce
	if err := nonce.GetFrom(res.Msg); err != nil {
		return res.Msg
	}
	m := build(stun.NewUsername(user), stun.NewRealm(testRealm), nonce,
		stun.NewLongTermIntegrity(user, testRealm, pass))
	res, err = c.PerformTransaction(m, to, false)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return res.Msg
}

// errorCode returns the ERROR-CODE of m, or 0.
func errorCode(m *stun.Message) int {
	var ec stun.ErrorCodeAttribute
	if ec.GetFrom(m) != nil {
		return 0
	}
	return int(ec.Code)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// buildSigned returns a signed Allocate request of user.
func buildSigned(t testing.TB, user, realm, pass string) []byte {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.NewUsername(user), stun.NewRealm(realm), stun.NewNonce("n"),
		stun.NewLongTermIntegrity(user, realm, pass), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

func testDeps() component.Deps {
	return component.Deps{Logger: discardLogger(), Registry: prometheus.NewRegistry()}
}
