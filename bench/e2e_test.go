package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/bench/capture"
	"github.com/mediaedge/mediaedge/bench/load"
	"github.com/mediaedge/mediaedge/bench/srtpcheck"
	"github.com/mediaedge/mediaedge/bench/sut"
	"github.com/mediaedge/mediaedge/internal/control"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestEndToEndDaemon drives the real daemon: its gateway through the
// session API (synthetic and replayed streams, SRTCP) and its relay with
// TURN REST credentials, as `make bench` does.
func TestEndToEndDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the daemon")
	}
	bin := testutil.BuildMediaedge(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, gw, tt, err := startMediaedge(ctx, dir, bin, -1)
	if p != nil {
		defer p.Stop()
	}
	if err != nil {
		t.Fatal(err)
	}
	if gw == nil {
		t.Fatal("the daemon answers no session API")
	}
	dgs, _, err := capture.ReadCaptureFile("capture/testdata/opus-lo6.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	replay := capture.ExtractRTPStreams(dgs, capture.ExtractOptions{})
	for _, tc := range []struct {
		name string
		opt  load.SRTPOptions
		S    int
	}{
		{"synthetic", load.SRTPOptions{Rate: 2000, Count: 100, RTCP: 2}, 3},
		{"opus capture", load.SRTPOptions{Replay: replay, AsFastAsPossible: true, Window: 32}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := testutil.ListenUDP(t), testutil.ListenUDP(t)
			flows, cleanup, err := gw.setup(ctx, tc.S, testutil.AddrOf(a), testutil.AddrOf(b))
			if err != nil {
				t.Fatal(err)
			}
			defer cleanup()
			opt := tc.opt
			opt.Conns, opt.PID, opt.Target = []*net.UDPConn{a, b}, gw.pid, "mediaedge"
			rep, err := load.RunSRTP(ctx, flows, opt)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			rep.WriteTable(&buf)
			t.Log("\n" + buf.String())
			if !rep.OK() {
				t.Fatal("not every packet made it through the gateway intact")
			}
		})
	}
	t.Run("re-keys during the run", func(t *testing.T) {
		a, b := testutil.ListenUDP(t), testutil.ListenUDP(t)
		s80, _ := srtpcheck.LookupSuite("AES_CM_128_HMAC_SHA1_80")
		c := control.NewClient(filepath.Join(dir, "control.sock"), "")
		defer c.Close()
		gs, err := sut.SetupGateway(ctx, c, sut.GatewaySetup{Sessions: 2, Suite: s80, Internal: testutil.AddrOf(a), Cloud: testutil.AddrOf(b)})
		if err != nil {
			t.Fatal(err)
		}
		defer gs.Close(context.Background())
		rep, err := load.RunSRTP(ctx, gs.Flows, load.SRTPOptions{Conns: []*net.UDPConn{a, b}, Rate: 2000, Count: 500,
			Rekey: gs.RekeyFlow, RekeyInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		rep.WriteTable(&buf)
		t.Log("\n" + buf.String())
		for _, d := range rep.Directions {
			if d.Received != d.Sent || d.Failed() != 0 || d.ReKeys == 0 {
				t.Errorf("%s: received %d of %d, failed %d, re-keys followed %d", d.Name, d.Received, d.Sent, d.Failed(), d.ReKeys)
			}
		}
	})
	t.Run("verify tcpdump captures", func(t *testing.T) {
		verifyRealCaptures(ctx, t, gw)
	})
	t.Run("relay", func(t *testing.T) {
		opt := tt.opt
		opt.Allocations, opt.Count, opt.Rate = 3, 100, 3000
		rep, err := load.RunTURN(ctx, opt)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() {
			var buf bytes.Buffer
			rep.WriteTable(&buf)
			t.Fatalf("through the relay:\n%s", buf.String())
		}
	})
}

// verifyRealCaptures captures a run through the real gateway with tcpdump
// on lo, splits the capture into its internal and cloud sides by bench's
// peer addresses, and checks that bench verify finds the re-keying clean.
func verifyRealCaptures(ctx context.Context, t *testing.T, gw *gwTarget) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and tcpdump (Debian package tcpdump)")
	}
	a, b := testutil.ListenUDP(t), testutil.ListenUDP(t)
	flows, cleanup, err := gw.setup(ctx, 1, testutil.AddrOf(a), testutil.AddrOf(b))
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	file := filepath.Join(t.TempDir(), "lo.pcap")
	filter := fmt.Sprintf("udp and (port %d or port %d)", testutil.AddrOf(a).Port(), testutil.AddrOf(b).Port())
	// --immediate-mode: with TPACKET_V3 blocks a SIGINT would drop the
	// packets of the last, unfilled block.
	cmd := exec.Command(tcpdump, "-i", "lo", "-n", "-U", "--immediate-mode", "-B", "16384", "-w", file, filter)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Signal(syscall.SIGINT)
			_ = cmd.Wait()
		}
	}
	defer stop()
	// tcpdump says "listening on lo" once its filter is attached.
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on") {
				close(ready)
				break
			}
		}
		for sc.Scan() {
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("tcpdump did not start")
	}
	rep, err := load.RunSRTP(ctx, flows, load.SRTPOptions{Conns: []*net.UDPConn{a, b}, Rate: 1000, Count: 200})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatal("the run itself lost or corrupted packets")
	}
	time.Sleep(200 * time.Millisecond)
	stop()
	dgs, _, err := capture.ReadCaptureFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var internal, cloud []capture.Datagram
	for _, d := range dgs {
		switch {
		case d.Src == testutil.AddrOf(a) || d.Dst == testutil.AddrOf(a):
			internal = append(internal, d)
		case d.Src == testutil.AddrOf(b) || d.Dst == testutil.AddrOf(b):
			cloud = append(cloud, d)
		}
	}
	keys := srtpcheck.VerifyKeys{InternalIn: []srtpcheck.Key{flows[0].TxKey}, CloudOut: []srtpcheck.Key{flows[0].RxKey},
		CloudIn: []srtpcheck.Key{flows[1].TxKey}, InternalOut: []srtpcheck.Key{flows[1].RxKey}}
	res, err := srtpcheck.Verify(internal, cloud, keys)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	res.Report.WriteTable(&buf)
	t.Logf("%d + %d captured datagrams\n%s", len(internal), len(cloud), buf.String())
	// The run delivered every packet (checked above), so a packet verify
	// calls missing can only be one the capture itself dropped: allow as
	// many as the capture lacks, and nothing else.
	lacking := 4*200 - len(internal) - len(cloud)
	missing := 0
	for _, v := range res.Violations {
		if v.Kind != srtpcheck.ViolationMissing {
			t.Errorf("violation: %v", v)
			continue
		}
		missing++
	}
	if missing > lacking {
		t.Errorf("%d packets missing, but the capture lacks only %d", missing, lacking)
	}
	for _, d := range res.Report.Directions {
		if d.Received < int64(200-lacking) || d.Latency.P50 <= 0 {
			t.Errorf("%s: %d matched, latency p50 %v µs", d.Name, d.Received, d.Latency.P50)
		}
	}
	// Swapping the legs' keys must make verify fail: the check can fail.
	keys.CloudOut, keys.InternalIn = keys.InternalIn, keys.CloudOut
	if res, err := srtpcheck.Verify(internal, cloud, keys); err != nil || res.OK() {
		t.Error("verify passes with the legs' keys swapped")
	}
}

func TestSocketPeerPID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	pid, err := sut.SocketPeerPID(path)
	<-done
	if err != nil || pid != os.Getpid() {
		t.Fatalf("pid %d, %v; want %d", pid, err, os.Getpid())
	}
}
