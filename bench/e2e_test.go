package bench

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// buildMediaedge builds the daemon from this tree, or skips.
func buildMediaedge(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the daemon")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go toolchain not on PATH")
	}
	bin := filepath.Join(t.TempDir(), "mediaedge")
	out, err := exec.Command(goBin, "build", "-o", bin, "../cmd/mediaedge").CombinedOutput()
	if err != nil {
		t.Skipf("mediaedge does not build from this tree right now: %v\n%s", err, out)
	}
	return bin
}

// TestEndToEndDaemon drives the real daemon: its gateway through the
// session API (synthetic and replayed streams, SRTCP) and its relay with
// TURN REST credentials, as `make bench` does.
func TestEndToEndDaemon(t *testing.T) {
	bin := buildMediaedge(t)
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
	dgs, _, err := ReadCaptureFile("testdata/opus-lo6.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	replay := ExtractRTPStreams(dgs, ExtractOptions{})
	for _, tc := range []struct {
		name string
		opt  SRTPOptions
		S    int
	}{
		{"synthetic", SRTPOptions{Rate: 2000, Count: 100, RTCP: 2}, 3},
		{"opus capture", SRTPOptions{Replay: replay, AsFastAsPossible: true, Window: 32}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := listenLoopback(t), listenLoopback(t)
			flows, cleanup, err := gw.setup(ctx, tc.S, addrOf(a), addrOf(b))
			if err != nil {
				t.Fatal(err)
			}
			defer cleanup()
			opt := tc.opt
			opt.Conns, opt.PID, opt.Target = []*net.UDPConn{a, b}, gw.pid, "mediaedge"
			rep, err := RunSRTP(ctx, flows, opt)
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
	t.Run("relay", func(t *testing.T) {
		opt := tt.opt
		opt.Allocations, opt.Count, opt.Rate = 3, 100, 3000
		rep, err := RunTURN(ctx, opt)
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
