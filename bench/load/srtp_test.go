package load

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/bench/benchtest"
	"github.com/mediaedge/mediaedge/bench/capture"
	"github.com/mediaedge/mediaedge/bench/report"
	"github.com/mediaedge/mediaedge/bench/srtpcheck"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// rig is a forwarder between two bench sockets: "int" (the internal peer)
// and "cloud" (the cloud peer), with four distinct keys.
type rig struct {
	fwd                        *benchtest.Forwarder
	intConn, cloudConn         *net.UDPConn
	kInt, gCloud, kCloud, gInt srtpcheck.Key
}

func newRig(t *testing.T, cfg benchtest.Config) *rig {
	t.Helper()
	s, _ := srtpcheck.LookupSuite("AES_CM_128_HMAC_SHA1_80")
	r := &rig{intConn: testutil.ListenUDP(t), cloudConn: testutil.ListenUDP(t)}
	for _, k := range []*srtpcheck.Key{&r.kInt, &r.gCloud, &r.kCloud, &r.gInt} {
		var err error
		if *k, err = srtpcheck.NewKey(s); err != nil {
			t.Fatal(err)
		}
	}
	cfg.KeyA, cfg.KeyRB, cfg.KeyB, cfg.KeyRA = r.kInt.Master, r.gCloud.Master, r.kCloud.Master, r.gInt.Master
	cfg.APeer, cfg.BPeer = testutil.AddrOf(r.intConn), testutil.AddrOf(r.cloudConn)
	fwd, err := benchtest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.fwd = fwd
	t.Cleanup(fwd.Close)
	return r
}

// flows returns S streams per direction (both when both is set).
func (r *rig) flows(S int, both bool) []Flow {
	var out []Flow
	for i := 0; i < S; i++ {
		out = append(out, Flow{Direction: "internal->cloud", TxKey: r.kInt, RxKey: r.gCloud,
			Src: testutil.AddrOf(r.intConn).String(), Target: r.fwd.A(), Recv: testutil.AddrOf(r.cloudConn).String()})
	}
	for i := 0; both && i < S; i++ {
		out = append(out, Flow{Direction: "cloud->internal", TxKey: r.kCloud, RxKey: r.gInt,
			Src: testutil.AddrOf(r.cloudConn).String(), Target: r.fwd.B(), Recv: testutil.AddrOf(r.intConn).String()})
	}
	return out
}

func (r *rig) conns() []*net.UDPConn { return []*net.UDPConn{r.intConn, r.cloudConn} }

func TestRunSRTPClean(t *testing.T) {
	r := newRig(t, benchtest.Config{})
	rep, err := RunSRTP(context.Background(), r.flows(3, true), SRTPOptions{
		Target: "fwd", Conns: r.conns(), Rate: 3000, Count: 200, RTCP: 2, MaxTime: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	if len(rep.Directions) != 2 {
		t.Fatalf("%d directions", len(rep.Directions))
	}
	for _, d := range rep.Directions {
		if d.Sent != 600 || d.Received != 600 || d.Lost != 0 || d.Failed() != 0 || d.Duplicated != 0 || d.Unknown != 0 {
			t.Errorf("%s: %+v", d.Name, d)
		}
		if d.RTCP == nil || d.RTCP.Received != 6 || d.RTCP.Failed != 0 {
			t.Errorf("%s: SRTCP %+v, want 6 verified", d.Name, d.RTCP)
		}
		if d.Latency.Count != 600 || d.Latency.P50 <= 0 || d.Latency.Max < d.Latency.P99 {
			t.Errorf("%s: latency %+v", d.Name, d.Latency)
		}
		// 3000 pps for 600 packets: about 0.2 s.
		if d.DurationS < 0.15 || d.DurationS > 2 {
			t.Errorf("%s: duration %v s at 3000 pps", d.Name, d.DurationS)
		}
	}
	if !rep.OK() || !bytes.Contains(out.Bytes(), []byte("PASS")) {
		t.Error("clean run not OK")
	}
}

// The acceptance test: a forwarder dropping every 100th packet yields
// exactly 1 % loss. The window keeps at most 32 packets queued at the
// forwarder, so its socket never overflows, even under the race detector:
// every loss is a deliberate drop.
func TestRunSRTPLossExactlyOnePercent(t *testing.T) {
	r := newRig(t, benchtest.Config{DropEvery: 100})
	rep, err := RunSRTP(context.Background(), r.flows(10, true), SRTPOptions{
		Conns: r.conns(), Count: 1000, Window: 32, Drain: 300 * time.Millisecond, MaxTime: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range rep.Directions {
		if d.Sent != 10000 || d.Lost != 100 || d.LossPct != 1 || d.Received != 9900 || d.Failed() != 0 {
			t.Errorf("%s: sent %d lost %d (%.4f %%) received %d failed %d, want 10000 100 (1 %%) 9900 0",
				d.Name, d.Sent, d.Lost, d.LossPct, d.Received, d.Failed())
		}
	}
	if got := r.fwd.Dropped.Load(); got != 200 {
		t.Errorf("forwarder dropped %d, want 200", got)
	}
	if rep.OK() {
		t.Error("lossy run reported OK")
	}
}

func TestRunSRTPDetects(t *testing.T) {
	tests := []struct {
		name  string
		cfg   benchtest.Config
		check func(t *testing.T, d report.Direction)
	}{
		{"plaintext out", benchtest.Config{Plain: true}, func(t *testing.T, d report.Direction) {
			if d.FailedAuth != d.Sent || d.Received != 0 {
				t.Errorf("plain RTP: failed auth %d of %d, received %d", d.FailedAuth, d.Sent, d.Received)
			}
		}},
		{"duplicates", benchtest.Config{Duplicate: 50}, func(t *testing.T, d report.Direction) {
			if d.Duplicated != d.Sent/50 || d.Received != d.Sent || d.Lost != 0 {
				t.Errorf("dup %d received %d of %d, want %d duplicates", d.Duplicated, d.Received, d.Sent, d.Sent/50)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, tc.cfg)
			rep, err := RunSRTP(context.Background(), r.flows(2, false), SRTPOptions{
				Conns: r.conns(), Count: 300, Rate: 1000, Drain: 300 * time.Millisecond, MaxTime: 20 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Directions[0].Sent != 600 {
				t.Fatalf("sent %d", rep.Directions[0].Sent)
			}
			tc.check(t, rep.Directions[0])
		})
	}
}

func TestRunSRTPWrongKey(t *testing.T) {
	r := newRig(t, benchtest.Config{})
	fl := r.flows(1, false)
	fl[0].RxKey = r.kInt // the internal key must not open cloud-side packets
	rep, err := RunSRTP(context.Background(), fl, SRTPOptions{Conns: r.conns(), Count: 100, Drain: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if d := rep.Directions[0]; d.FailedAuth != 100 || d.Received != 0 {
		t.Errorf("failed auth %d received %d, want 100 0", d.FailedAuth, d.Received)
	}
}

func TestRunSRTPReplayCapture(t *testing.T) {
	dgs, _, err := capture.ReadCaptureFile("../capture/testdata/pcmu-lo.pcap")
	if err != nil {
		t.Fatal(err)
	}
	streams := capture.ExtractRTPStreams(dgs, capture.ExtractOptions{})
	r := newRig(t, benchtest.Config{})
	var pcap bytes.Buffer
	rep, err := RunSRTP(context.Background(), r.flows(1, true), SRTPOptions{
		Conns: r.conns(), Replay: streams, AsFastAsPossible: true, Count: 40, WritePcap: &pcap,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range rep.Directions {
		if d.Sent != 40 || d.Received != 40 || d.Failed() != 0 {
			t.Errorf("%s: %+v", d.Name, d)
		}
	}
	// What came back, as written: 80 datagrams, SRTP with the captured
	// SSRC, none of them carrying a captured payload in clear.
	back, _, err := capture.ReadCapture(&pcap)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 80 {
		t.Fatalf("pcap holds %d datagrams, want 80", len(back))
	}
	for _, d := range back {
		got := capture.ExtractRTPStreams([]capture.Datagram{d}, capture.ExtractOptions{MinPackets: 1})
		if len(got) != 1 || got[0].SSRC != 0x12345678 {
			t.Fatalf("written datagram is not RTP of the captured SSRC")
		}
		for _, p := range streams[0].Packets {
			if bytes.Contains(d.Payload, p.Raw[p.HeaderLen:p.HeaderLen+32]) {
				t.Fatal("captured payload in clear on the way out")
			}
		}
	}
}

func TestRunSRTPReplayKeepsTiming(t *testing.T) {
	dgs, _, err := capture.ReadCaptureFile("../capture/testdata/pcmu-any-sll.pcap")
	if err != nil {
		t.Fatal(err)
	}
	streams := capture.ExtractRTPStreams(dgs, capture.ExtractOptions{})
	r := newRig(t, benchtest.Config{})
	rep, err := RunSRTP(context.Background(), r.flows(1, false), SRTPOptions{Conns: r.conns(), Replay: streams})
	if err != nil {
		t.Fatal(err)
	}
	d := rep.Directions[0]
	want := streams[0].Duration().Seconds()
	if d.Received != 30 || d.DurationS < want*0.9 || d.DurationS > want+0.5 {
		t.Errorf("received %d over %.3f s, want 30 over about %.3f s", d.Received, d.DurationS, want)
	}
	// ffmpeg paced at 20 ms: jitter on loopback stays far below a packet
	// time.
	if d.JitterMs <= 0 || d.JitterMs > 10 {
		t.Errorf("jitter %v ms", d.JitterMs)
	}
}

// Runs are bounded: a huge count at a low rate stops at MaxTime.
func TestRunSRTPBoundedByMaxTime(t *testing.T) {
	r := newRig(t, benchtest.Config{})
	start := time.Now()
	rep, err := RunSRTP(context.Background(), r.flows(1, false), SRTPOptions{
		Conns: r.conns(), Rate: 200, Count: 1_000_000, MaxTime: 400 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("run took %v with MaxTime 400ms", el)
	}
	d := rep.Directions[0]
	if d.Sent == 0 || d.Sent > 200 || len(rep.Notes) == 0 {
		t.Errorf("sent %d, notes %q", d.Sent, rep.Notes)
	}
}

func TestRunSRTPBadOptions(t *testing.T) {
	r := newRig(t, benchtest.Config{})
	defer r.intConn.Close()
	defer r.cloudConn.Close()
	for _, opt := range []SRTPOptions{
		{Rate: 0}, // window mode without count
		{Count: 1, PayloadBytes: 4},
		{Count: 1, Rate: -1},
	} {
		if _, err := RunSRTP(context.Background(), r.flows(1, false), opt); err == nil {
			t.Errorf("options %+v accepted", opt)
		}
	}
	if _, err := RunSRTP(context.Background(), nil, SRTPOptions{Count: 1}); err == nil {
		t.Error("no flows accepted")
	}
}

// Sequence numbers that wrap during the run: the SRTP index (ROC) moves on
// in bench's sender, the forwarder and bench's receiver alike.
func TestRunSRTPSequenceWrap(t *testing.T) {
	defer func(f func() uint16) { firstSeq = f }(firstSeq)
	firstSeq = func() uint16 { return 65500 }
	r := newRig(t, benchtest.Config{})
	rep, err := RunSRTP(context.Background(), r.flows(2, true), SRTPOptions{Conns: r.conns(), Rate: 4000, Count: 300})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range rep.Directions {
		if d.Received != 600 || d.Failed() != 0 {
			t.Errorf("%s: received %d of %d, failed %d across the wrap", d.Name, d.Received, d.Sent, d.Failed())
		}
	}
}

// TestRunSRTPKeyArrivesAfterTheStream: the system under test switches
// to a new key at once, but the control request that hands bench the key
// returns only after the last packet arrived (a busy machine): the
// packets held for want of it are verified when the run ends, not
// counted as failed.
func TestRunSRTPKeyArrivesAfterTheStream(t *testing.T) {
	r := newRig(t, benchtest.Config{})
	s, _ := srtpcheck.LookupSuite("AES_CM_128_HMAC_SHA1_80")
	var once sync.Once
	rep, err := RunSRTP(context.Background(), r.flows(1, false), SRTPOptions{Conns: r.conns(), Rate: 2000, Count: 200,
		RekeyInterval: 20 * time.Millisecond, Drain: 2 * time.Second,
		Rekey: func(ctx context.Context, i int) (k srtpcheck.Key, ok bool, err error) {
			once.Do(func() {
				if k, err = srtpcheck.NewKey(s); err != nil {
					return
				}
				r.fwd.SwitchOutKey(0, benchtest.Key(k.Master))
				ok = true
				// The stream (100 ms) ends meanwhile.
				time.Sleep(400 * time.Millisecond)
			})
			return k, ok, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	d := rep.Directions[0]
	if d.Received != 200 || d.Failed() != 0 || d.ReKeys != 1 {
		t.Errorf("%s: received %d of %d, failed %d, re-keys %d; want 200, 0, 1", d.Name, d.Received, d.Sent, d.Failed(), d.ReKeys)
	}
}

// The forwarder switches its outbound keys while the run goes on, the way
// a gateway re-keys: bench follows every switch and verifies every packet.
func TestRunSRTPFollowsReKeys(t *testing.T) {
	r := newRig(t, benchtest.Config{})
	s, _ := srtpcheck.LookupSuite("AES_CM_128_HMAC_SHA1_80")
	fl := r.flows(1, true)
	// 1,500 packets at 2,000/s: about 12 re-key intervals, of which a
	// busy machine may skip some (a key is not replaced before bench saw
	// it in use).
	rep, err := RunSRTP(context.Background(), fl, SRTPOptions{Conns: r.conns(), Rate: 2000, Count: 1500,
		// Drain only bounds the wait for stragglers on a busy machine.
		RekeyInterval: 60 * time.Millisecond, Drain: 5 * time.Second,
		Rekey: func(_ context.Context, i int) (srtpcheck.Key, bool, error) {
			k, err := srtpcheck.NewKey(s)
			if err != nil {
				return k, false, err
			}
			// The forwarder switches at once, possibly before bench
			// has the key: the packets in between wait for it.
			dir := 0
			if fl[i].Direction == "cloud->internal" {
				dir = 1
			}
			r.fwd.SwitchOutKey(dir, benchtest.Key(k.Master))
			return k, true, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range rep.Directions {
		if d.Received != 1500 || d.Failed() != 0 || d.ReKeys < 3 {
			t.Errorf("%s: received %d of %d, failed %d, re-keys %d", d.Name, d.Received, d.Sent, d.Failed(), d.ReKeys)
		}
	}
	// Without following the keys, the same switches fail verification:
	// the test can fail.
	r2 := newRig(t, benchtest.Config{})
	fl2 := r2.flows(1, false)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-stop:
		case <-time.After(50 * time.Millisecond):
			k, _ := srtpcheck.NewKey(s)
			r2.fwd.SwitchOutKey(0, benchtest.Key(k.Master))
		}
	}()
	rep, err = RunSRTP(context.Background(), fl2, SRTPOptions{Conns: r2.conns(), Rate: 2000, Count: 300})
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if d := rep.Directions[0]; d.FailedAuth == 0 {
		t.Errorf("an unannounced key switch went unnoticed: %+v", d)
	}
}
