package bench

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/bench/load"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestRtpengine runs real re-keying calls through Debian's rtpengine
// (userspace) over ng: four distinct keys per call, every packet verified.
func TestRtpengine(t *testing.T) {
	if _, err := exec.LookPath("rtpengine"); err != nil {
		t.Skip("rtpengine not installed (Debian package rtpengine-daemon)")
	}
	dir := t.TempDir()
	p, gw, err := startRtpengine(dir, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	a, b := testutil.ListenUDP(t), testutil.ListenUDP(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	flows, cleanup, err := gw.setup(ctx, 2, testutil.AddrOf(a), testutil.AddrOf(b))
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	for _, f := range flows {
		if string(f.TxKey.Master) == string(f.RxKey.Master) {
			t.Fatal("rtpengine passes the key through: no re-keying")
		}
	}
	rep, err := load.RunSRTP(ctx, flows, load.SRTPOptions{Target: "rtpengine", Conns: []*net.UDPConn{a, b}, Rate: 1000, Count: 100, PID: p.PID()})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		var buf bytes.Buffer
		rep.WriteTable(&buf)
		t.Fatalf("through rtpengine:\n%s", buf.String())
	}
	if rep.SUT == nil || rep.SUT.RSSKiB == 0 {
		t.Errorf("no SUT figures: %+v", rep.SUT)
	}
}

func TestCoturn(t *testing.T) {
	if _, err := exec.LookPath("turnserver"); err != nil {
		t.Skip("coturn not installed (Debian package coturn)")
	}
	p, tt, err := startCoturn(t.TempDir(), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	opt := tt.opt
	opt.Allocations, opt.Count, opt.Rate = 2, 100, 2000
	rep, err := load.RunTURN(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		var buf bytes.Buffer
		rep.WriteTable(&buf)
		t.Fatalf("through coturn:\n%s", buf.String())
	}
}
