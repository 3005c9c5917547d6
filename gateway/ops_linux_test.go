package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/component"
	metest "github.com/mediaedge/mediaedge/internal/testutil"
)

func TestIdleTimeoutEndsSession(t *testing.T) {
	cfg := testConfig()
	// A second: far more than a busy machine keeps the sender below
	// off the CPU, so that the busy call never looks idle.
	cfg.IdleTimeout = durationOf(time.Second)
	g := startGateway(t, cfg)
	idle := newCall(t, g, suiteAES128SHA80, suiteAES128SHA80, true)
	busy := newCall(t, g, suiteAES128SHA80, suiteAES128SHA80, true)
	tx := contextFor(t, busy.kInt, false)
	// The busy call sends every 50 ms for 2.5 s at least (past the
	// timeout and a housekeeping round) and until the idle session has
	// ended, within a generous bound.
	start, idleGone := time.Now(), false
	for seq := uint16(1); time.Since(start) < 15*time.Second; seq++ {
		busy.intRTP.send(busy.info.Internal.Local, encRTP(t, tx, rtpPacket(t, 3, seq, 50)))
		time.Sleep(50 * time.Millisecond)
		if !idleGone {
			_, err := g.Session(context.Background(), idle.info.ID)
			idleGone = err != nil
		}
		if idleGone && time.Since(start) > 2500*time.Millisecond {
			break
		}
	}
	if !idleGone {
		t.Fatal("the idle session still exists")
	}
	if _, err := g.Session(context.Background(), busy.info.ID); err != nil {
		t.Fatalf("the busy session ended: %v", err)
	}
	evs, _ := g.events.since(context.Background(), 0, 100, 0)
	var ended []string
	for _, e := range evs {
		if e.Type == EventEnded {
			ended = append(ended, e.Session+":"+e.Reason)
		}
	}
	if len(ended) != 1 || ended[0] != idle.info.ID+":"+EndIdle {
		t.Errorf("ended events %v, want only %s:%s", ended, idle.info.ID, EndIdle)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	g, err := New(testConfig(), component.Deps{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	c := newCall(t, g, suiteAES128SHA80, suiteAEAD128, true)
	c.exchange(t, 4, 99)
	newPeer(t).send(c.info.Internal.Local, []byte{1, 2, 3})
	metest.WaitFor(t, "the malformed drop", 3*time.Second, func() bool {
		return strings.Contains(gather(t, reg), `mediaedge_gateway_dropped_packets_total{leg="internal",reason="malformed"} 1`)
	})
	out := gather(t, reg)
	for _, want := range []string{
		`mediaedge_gateway_packets_total{direction="in",leg="internal"} 5`,
		`mediaedge_gateway_packets_total{direction="out",leg="cloud"} 5`,
		`mediaedge_gateway_sessions 1`,
		`mediaedge_gateway_sessions_created_total 1`,
		`mediaedge_gateway_latched_total{leg="internal"} 1`,
		`mediaedge_gateway_port_mode_info{leg="cloud",mode="shared"} 1`,
		`mediaedge_gateway_dropped_packets_total{leg="internal",reason="junk_source"} 0`,
		`mediaedge_gateway_dropped_packets_total{leg="internal",reason="trial_refused"} 0`,
		`mediaedge_gateway_trial_denied_sources_total 0`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(out, c.info.ID) {
		t.Error("a metric carries a session id")
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n > 80 {
		t.Errorf("%d series (err %v): labels must stay bounded", n, err)
	}
}

func gather(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			if len(labels) > 0 {
				fmt.Fprintf(&b, "%s{%s} %v\n", mf.GetName(), strings.Join(labels, ","), v)
			} else {
				fmt.Fprintf(&b, "%s %v\n", mf.GetName(), v)
			}
		}
	}
	return b.String()
}

// TestReloadAppliesMarkToExistingSockets: a changed cloud mark reaches the
// sockets of running sessions, which keep working.
func TestReloadAppliesMarkToExistingSockets(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SO_MARK needs CAP_NET_ADMIN: run as root")
	}
	cfg := testConfig()
	g := startGateway(t, cfg)
	c := newCall(t, g, suiteAES128SHA80, suiteAES128SHA80, false)
	cfg.Cloud.Mark = 0x4d45
	cfg.Workers = 5 // needs a restart: kept as it was
	if err := g.Reload(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	s, _ := g.lookup(c.info.ID)
	var marks []int
	_ = s.w.do(context.Background(), func() {
		for _, so := range []*sock{s.legs[legCloud].rtp, s.legs[legCloud].rtcp, s.legs[legInternal].rtp} {
			m, _ := unix.GetsockoptInt(so.fd, unix.SOL_SOCKET, unix.SO_MARK)
			marks = append(marks, m)
		}
	})
	if fmt.Sprint(marks) != fmt.Sprint([]int{0x4d45, 0x4d45, 0}) {
		t.Errorf("marks cloud rtp, cloud rtcp, internal = %#x, want 0x4d45 0x4d45 0", marks)
	}
	if n := len(g.workers); n != 2 {
		t.Errorf("%d workers after a reload asking for 5, want 2", n)
	}
	c.exchange(t, 2, 5)
}

// TestManySessions creates 10,000 sessions (shared ports: a dedicated
// port per leg would need 20,000 file descriptors, this machine's hard
// limit), checks the memory an idle session costs, that sessions work
// among them, and that deleting them gives everything back.
func TestManySessions(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 10,000 sessions")
	}
	for _, tc := range []struct {
		mode PortMode
		n    int
	}{{PortsShared, 10000}, {PortsDedicated, 3000}} {
		t.Run(string(tc.mode), func(t *testing.T) {
			cfg := testConfig()
			cfg.MaxSessions = tc.n + 3
			cfg.Internal.PortMode, cfg.Cloud.PortMode = tc.mode, tc.mode
			g := startGateway(t, cfg)
			ctx := context.Background()
			heap0 := liveHeap()
			ids := make([]string, 0, tc.n)
			for i := 0; i < tc.n; i++ {
				info, err := g.Create(ctx, CreateRequest{
					Internal: LegRequest{Crypto: newKeyLine(t, suiteAES128SHA80), RTCPMux: true,
						Remote: fmt.Sprintf("127.0.0.2:%d", 10000+i)},
					Cloud: LegRequest{Crypto: newKeyLine(t, suiteAES128SHA80), RTCPMux: true,
						Remote: fmt.Sprintf("127.0.0.3:%d", 10000+i)},
				})
				if err != nil {
					t.Fatalf("session %d: %v", i, err)
				}
				ids = append(ids, info.ID)
			}
			perSession := float64(liveHeap()-heap0) / float64(tc.n)
			t.Logf("%s: %d idle sessions, %.0f bytes of Go heap each", tc.mode, tc.n, perSession)
			if perSession > 10*1024 {
				t.Errorf("%.0f bytes per idle session, goal at most 10 KiB", perSession)
			}
			// Sessions among them work.
			for i := 0; i < 3; i++ {
				newCall(t, g, suiteAES128SHA80, suiteAEAD128, true).exchange(t, 2, uint32(100+i))
			}
			list, err := g.Sessions(ctx)
			if err != nil || len(list) != tc.n+3 {
				t.Fatalf("list: %d sessions, err %v", len(list), err)
			}
			for _, id := range ids {
				if err := g.Delete(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			if left := float64(liveHeap()-heap0) / float64(tc.n); left > 1024 {
				t.Errorf("%.0f bytes per deleted session still held", left)
			}
		})
	}
}

func liveHeap() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestMemoryPerActiveSession: once media flows, a session holds its four
// pion contexts (created on first use) and stream state.
func TestMemoryPerActiveSession(t *testing.T) {
	const n = 1000
	heap0 := liveHeap()
	keep := make([]*bench, n)
	for i := range keep {
		b := newBench(t, suiteAES128SHA80, suiteAES128SHA32, false)
		buf := make([]byte, bufSize)
		k := copy(buf, encRTP(t, b.intTx, rtpPacket(t, 1, 1, 160)))
		if out, _, _, _ := b.w.handle(b.intSock, b.src, buf, k); out == nil {
			t.Fatal("internal to cloud dropped")
		}
		k = copy(buf, encRTP(t, b.cloudTx, rtpPacket(t, 2, 1, 160)))
		if out, _, _, _ := b.w.handle(b.s.legs[legCloud].rtp, netip.MustParseAddrPort("198.51.100.7:40000"), buf, k); out == nil {
			t.Fatal("cloud to internal dropped")
		}
		b.intTx, b.cloudTx, b.cloudRx = nil, nil, nil // the test's own contexts
		keep[i] = b
	}
	// Each bench also has its own worker (scratch buffer, headers) and
	// gateway, which a real session does not: subtract one of each.
	base := liveHeap()
	one := newBench(t, suiteAES128SHA80, suiteAES128SHA32, false)
	one.intTx, one.cloudTx, one.cloudRx = nil, nil, nil
	overhead := liveHeap() - base
	per := float64(liveHeap()-heap0)/float64(n) - float64(overhead)
	runtime.KeepAlive(keep)
	runtime.KeepAlive(one)
	t.Logf("%.0f bytes of Go heap per session with media in both directions (bench overhead %d subtracted)", per, overhead)
	if per > 24*1024 {
		t.Errorf("%.0f bytes per active session", per)
	}
}
