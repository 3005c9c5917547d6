package ngcall

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/mediaedge/mediaedge/bench/sut"
	"github.com/mediaedge/mediaedge/gateway"
	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ngConfig is a gateway on loopback with any free ports (0-0), every
// suite, and the ng listener on an ephemeral port.
func ngConfig() gateway.Config {
	c := gateway.DefaultConfig()
	c.Workers = 2
	for _, l := range []*gateway.LegConfig{&c.Internal, &c.Cloud} {
		l.Ports.Min, l.Ports.Max = 0, 0
		l.Suites = gateway.SuiteNames()[:6]
	}
	c.NG.Listen = "127.0.0.1:0"
	return c
}

// startGateway starts a gateway for cfg and stops it at the end of the test.
func startGateway(t testing.TB, cfg gateway.Config) *gateway.Gateway {
	t.Helper()
	g, err := gateway.New(cfg, component.Deps{Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

func mustSessions(t *testing.T, g *gateway.Gateway) []gateway.SessionInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := g.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// numCalls asks the ng server how many calls it knows (list).
func numCalls(t *testing.T, addr netip.AddrPort) int {
	t.Helper()
	c, err := sut.DialNG(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := c.Call(ctx, map[string]any{"command": "list", "limit": int64(1000)})
	if err != nil {
		t.Fatal(err)
	}
	l, _ := d["calls"].([]any)
	return len(l)
}

// freeAddr returns a loopback address with a port nobody holds now.
func freeAddr(t testing.TB) netip.AddrPort {
	t.Helper()
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(testutil.FreePort(t)))
}

func ngRTP(seq uint16, ssrc uint32) []byte {
	p := []byte{0x80, 0, byte(seq >> 8), byte(seq), 0, 0, 0, 1, byte(ssrc >> 24), byte(ssrc >> 16), byte(ssrc >> 8), byte(ssrc)}
	for i := 0; i < 160; i++ {
		p = append(p, 0xd5)
	}
	return p
}
