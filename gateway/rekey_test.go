package gateway

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pion/srtp/v3"

	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// keyRing is a test receiver that holds every key the gateway announced
// on a leg, in order, as a peer would after signalling: it decrypts with
// the current key, moves on to the next one when a packet needs it, and
// continues each stream's rollover counter on the new key (ROC "keep").
type keyRing struct {
	t     *testing.T
	lines []string
	ctxs  []*srtp.Context
	cur   int
	used  []int // packets decrypted per key
	fresh bool  // start new keys at ROC 0 (the gateway's "reset" policy)
}

func (r *keyRing) add(line string) {
	r.lines = append(r.lines, line)
	r.ctxs = append(r.ctxs, contextFor(r.t, line, true))
	r.used = append(r.used, 0)
}

// open decrypts b with the current key or a later one.
func (r *keyRing) open(b []byte, ssrc uint32) ([]byte, error) {
	var firstErr error
	for i := r.cur; i < len(r.ctxs); i++ {
		if i > r.cur && !r.fresh {
			if roc, ok := r.ctxs[r.cur].ROC(ssrc); ok {
				if _, seen := r.ctxs[i].ROC(ssrc); !seen {
					r.ctxs[i].SetROC(ssrc, roc)
				}
			}
		}
		out, err := r.ctxs[i].DecryptRTP(nil, b, nil)
		if err == nil {
			r.cur = i
			r.used[i]++
			return out, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

// collect reads n datagrams from p in the background.
func collect(p *peer, n int, timeout time.Duration) <-chan [][]byte {
	ch := make(chan [][]byte, 1)
	go func() {
		var got [][]byte
		end := time.Now().Add(timeout)
		buf := make([]byte, 2048)
		for len(got) < n && time.Now().Before(end) {
			_ = p.conn.SetReadDeadline(end)
			k, _, err := p.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			got = append(got, bytes.Clone(buf[:k]))
		}
		ch <- got
	}()
	return ch
}

func TestRekeyUnderLoadLosesNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mki   bool
		delay time.Duration
	}{
		{"no-mki-switch-delay", false, 80 * time.Millisecond},
		{"mki-immediate", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Cloud.SwitchDelay = durationOf(tc.delay)
			g := startGateway(t, cfg)
			intPeer, cloudPeer := newPeer(t), newPeer(t)
			kInt := newKeyLine(t, suiteAES128SHA80)
			info := mustCreate(t, g, CreateRequest{
				Internal: LegRequest{Crypto: kInt, RTCPMux: true},
				Cloud:    LegRequest{Crypto: newKeyLine(t, suiteAES128SHA80), RTCPMux: true, Remote: cloudPeer.addr(), MKI: tc.mki},
			})
			ring := &keyRing{t: t}
			ring.add(info.Cloud.Crypto)
			const n, ssrc = 600, 0x00c0ffee
			arrived := collect(cloudPeer, n, 10*time.Second)
			tx := contextFor(t, kInt, false)
			seq0 := uint16(65400) // wraps after 136 packets: keys after that carry ROC 1
			for i := 0; i < n; i++ {
				intPeer.send(info.Internal.Local, encRTP(t, tx, rtpPacket(t, ssrc, seq0+uint16(i), 160)))
				if i == 300 || i == 450 {
					res, err := g.Rekey(context.Background(), info.ID, "cloud")
					if err != nil {
						t.Fatal(err)
					}
					ring.add(res.Crypto)
				}
				time.Sleep(300 * time.Microsecond)
			}
			got := <-arrived
			if len(got) != n {
				t.Fatalf("%d of %d packets arrived", len(got), n)
			}
			for i, b := range got {
				plain, err := ring.open(b, ssrc)
				if err != nil {
					t.Fatalf("packet %d of %d does not decrypt with any announced key: %v", i, n, err)
				}
				if want := rtpPacket(t, ssrc, seq0+uint16(i), 160); !bytes.Equal(plain, want) {
					t.Fatalf("packet %d differs", i)
				}
			}
			for i, u := range ring.used {
				if u == 0 {
					t.Errorf("key %d was never used (%v)", i+1, ring.used)
				}
			}
			if tc.mki {
				c2, _ := ParseCrypto(ring.lines[2])
				c1, _ := ParseCrypto(ring.lines[1])
				if bytes.Equal(c1.Keys[0].MKI, c2.Keys[0].MKI) || len(c1.Keys[0].MKI) != 1 {
					t.Errorf("MKIs %x and %x: want distinct 1-byte MKIs", c1.Keys[0].MKI, c2.Keys[0].MKI)
				}
			}
			sh := mustShow(t, g, info.ID)
			if sh.Cloud.KeyEpoch != 3 || sh.Cloud.ROC != 1 {
				t.Errorf("cloud key_epoch=%d roc=%d, want 3 and 1", sh.Cloud.KeyEpoch, sh.Cloud.ROC)
			}
		})
	}
}

// TestLifetimeExhaustion: a leg whose key has a packet budget re-keys
// before the budget is spent (policy rekey), or stops sending (stop).
func TestLifetimeExhaustion(t *testing.T) {
	t.Run("rekey", func(t *testing.T) {
		g := startGateway(t, testConfig())
		intPeer, cloudPeer := newPeer(t), newPeer(t)
		kInt := newKeyLine(t, suiteAES256SHA80)
		info := mustCreate(t, g, CreateRequest{
			Internal: LegRequest{Crypto: kInt, RTCPMux: true},
			Cloud: LegRequest{Crypto: newKeyLine(t, suiteAEAD128), RTCPMux: true, Remote: cloudPeer.addr(),
				Suite: "AES_CM_128_HMAC_SHA1_32", KeyLifetime: 100},
		})
		if c, _ := ParseCrypto(info.Cloud.Crypto); c.Keys[0].Lifetime != 100 || c.Suite != suiteAES128SHA32 {
			t.Fatalf("cloud a=crypto %s: want lifetime 100 and AES_CM_128_HMAC_SHA1_32", c.Redacted())
		}
		const n, ssrc = 350, 77
		arrived := collect(cloudPeer, n, 10*time.Second)
		tx := contextFor(t, kInt, false)
		for i := 0; i < n; i++ {
			intPeer.send(info.Internal.Local, encRTP(t, tx, rtpPacket(t, ssrc, uint16(i+1), 160)))
			time.Sleep(200 * time.Microsecond)
		}
		got := <-arrived
		if len(got) != n {
			t.Fatalf("%d of %d packets arrived", len(got), n)
		}
		// The new keys reach the peer through the event log.
		ring := &keyRing{t: t}
		ring.add(info.Cloud.Crypto)
		evs, _ := g.events.since(context.Background(), 0, 1000, 0)
		for _, e := range evs {
			if e.Type == EventRekeyed && e.Session == info.ID {
				if e.Reason != triggerLifetime || e.Crypto == "" {
					t.Fatalf("rekeyed event %+v: want reason lifetime with a crypto line", e)
				}
				ring.add(e.Crypto)
			}
		}
		for i, b := range got {
			if _, err := ring.open(b, ssrc); err != nil {
				t.Fatalf("packet %d: %v", i, err)
			}
		}
		for i, u := range ring.used {
			if u > 100 {
				t.Errorf("key %d protected %d packets, budget 100", i+1, u)
			}
		}
		if len(ring.used) < 4 {
			t.Errorf("%d keys for %d packets with a budget of 100", len(ring.used), n)
		}
	})
	t.Run("stop", func(t *testing.T) {
		cfg := testConfig()
		cfg.Cloud.OnKeyExhausted = ExhaustStop
		cfg.Cloud.KeyLifetime = 50
		g := startGateway(t, cfg)
		intPeer, cloudPeer := newPeer(t), newPeer(t)
		kInt := newKeyLine(t, suiteAES128SHA80)
		info := mustCreate(t, g, CreateRequest{
			Internal: LegRequest{Crypto: kInt, RTCPMux: true},
			Cloud:    LegRequest{Crypto: newKeyLine(t, suiteAES128SHA80), RTCPMux: true, Remote: cloudPeer.addr()},
		})
		arrived := collect(cloudPeer, 80, 1500*time.Millisecond)
		tx := contextFor(t, kInt, false)
		for i := 0; i < 80; i++ {
			intPeer.send(info.Internal.Local, encRTP(t, tx, rtpPacket(t, 5, uint16(i+1), 160)))
		}
		if got := <-arrived; len(got) != 50 {
			t.Fatalf("%d packets arrived, want the budget of 50", len(got))
		}
		if c := mustShow(t, g, info.ID).Cloud.Counters; c.KeyExhausted != 30 {
			t.Errorf("key_exhausted = %d, want 30", c.KeyExhausted)
		}
		// A new key through the API lets the leg send again.
		res, err := g.Rekey(context.Background(), info.ID, "cloud")
		if err != nil {
			t.Fatal(err)
		}
		intPeer.send(info.Internal.Local, encRTP(t, tx, rtpPacket(t, 5, 81, 160)))
		rx := contextFor(t, res.Crypto, true)
		rx.SetROC(5, 0)
		mustRecvRTP(t, cloudPeer, rx, rtpPacket(t, 5, 81, 160))
	})
}

// TestPeerRekeyGrace: after the peer's key is replaced (PATCH), packets
// with the old key pass for rekey_grace and not after; the new key
// continues the stream's rollover counter.
func TestPeerRekeyGrace(t *testing.T) {
	cfg := testConfig()
	cfg.Internal.RekeyGrace = durationOf(300 * time.Millisecond)
	g := startGateway(t, cfg)
	c := newCall(t, g, suiteAEAD256, suiteAES128SHA80, true)
	k1 := contextFor(t, c.kInt, false)
	rx := contextFor(t, c.info.Cloud.Crypto, true)
	const ssrc = 0x1234
	seq := uint16(65530) // wraps before the new key: ROC 1 must carry over
	send := func(ctx *srtp.Context) []byte {
		plain := rtpPacket(t, ssrc, seq, 120)
		c.intRTP.send(c.info.Internal.Local, encRTP(t, ctx, plain))
		seq++
		return plain
	}
	for i := 0; i < 10; i++ {
		mustRecvRTP(t, c.cloudRTP, rx, send(k1))
	}
	k2line := newKeyLine(t, suiteAES256SHA32)
	if _, err := g.Update(context.Background(), c.info.ID, UpdateRequest{Internal: &LegUpdate{Crypto: k2line}}); err != nil {
		t.Fatal(err)
	}
	k2 := contextFor(t, k2line, false)
	k2.SetROC(ssrc, 1)                       // the peer keeps its ROC too
	mustRecvRTP(t, c.cloudRTP, rx, send(k1)) // in flight with the old key
	mustRecvRTP(t, c.cloudRTP, rx, send(k2))
	mustRecvRTP(t, c.cloudRTP, rx, send(k1))
	mustRecvRTP(t, c.cloudRTP, rx, send(k2))
	time.Sleep(1500 * time.Millisecond) // past the grace and a housekeeping round
	send(k1)
	c.cloudRTP.expectNothing(100 * time.Millisecond)
	mustRecvRTP(t, c.cloudRTP, rx, send(k2))
	info := mustShow(t, g, c.info.ID)
	if info.Internal.Counters.AuthFailures != 1 || info.Internal.PeerKeyEpoch != 2 || info.Internal.PeerSuite != "AES_256_CM_HMAC_SHA1_32" {
		t.Errorf("auth_failures=%d peer_key_epoch=%d peer_suite=%s, want 1, 2, AES_256_CM_HMAC_SHA1_32",
			info.Internal.Counters.AuthFailures, info.Internal.PeerKeyEpoch, info.Internal.PeerSuite)
	}
}

// TestROCPolicy: on a new outbound key, "keep" continues the rollover
// counter and "reset" starts at 0, which a peer with a fresh context
// expects.
func TestROCPolicy(t *testing.T) {
	for _, policy := range []ROCPolicy{ROCKeep, ROCReset} {
		t.Run(string(policy), func(t *testing.T) {
			cfg := testConfig()
			cfg.Cloud.ROC = policy
			g := startGateway(t, cfg)
			c := newCall(t, g, suiteAES128SHA80, suiteAES128SHA80, true)
			tx := contextFor(t, c.kInt, false)
			rx := contextFor(t, c.info.Cloud.Crypto, true)
			const ssrc = 42
			seq := uint16(65533)
			for i := 0; i < 6; i++ { // 65533 .. 2: ROC 1
				mustRecvRTP(t, c.cloudRTP, rx, func() []byte {
					p := rtpPacket(t, ssrc, seq, 100)
					c.intRTP.send(c.info.Internal.Local, encRTP(t, tx, p))
					seq++
					return p
				}())
			}
			res, err := g.Rekey(context.Background(), c.info.ID, "cloud")
			if err != nil {
				t.Fatal(err)
			}
			plain := rtpPacket(t, ssrc, seq, 100)
			c.intRTP.send(c.info.Internal.Local, encRTP(t, tx, plain))
			b, _ := c.cloudRTP.recv(2 * time.Second)
			fresh := contextFor(t, res.Crypto, true) // ROC 0
			_, errFresh := fresh.DecryptRTP(nil, b, nil)
			kept := contextFor(t, res.Crypto, true)
			kept.SetROC(ssrc, 1)
			_, errKept := kept.DecryptRTP(nil, b, nil)
			if policy == ROCReset && (errFresh != nil || errKept == nil) {
				t.Errorf("reset: fresh context err=%v, ROC-1 context err=%v; want only the fresh one to work", errFresh, errKept)
			}
			if policy == ROCKeep && (errKept != nil || errFresh == nil) {
				t.Errorf("keep: ROC-1 context err=%v, fresh context err=%v; want only ROC 1 to work", errKept, errFresh)
			}
		})
	}
}

func TestScheduledRekeys(t *testing.T) {
	cfg := testConfig()
	cfg.Cloud.RekeyPackets = 20
	cfg.Internal.RekeyInterval = durationOf(time.Second)
	g := startGateway(t, cfg)
	c := newCall(t, g, suiteAES128SHA80, suiteAES128SHA80, true)
	tx := contextFor(t, c.kInt, false)
	arrived := collect(c.cloudRTP, 50, 3*time.Second)
	for i := 0; i < 50; i++ {
		c.intRTP.send(c.info.Internal.Local, encRTP(t, tx, rtpPacket(t, 1, uint16(i+1), 100)))
	}
	<-arrived
	testutil.WaitFor(t, "a scheduled re-key of the internal leg", 3*time.Second, func() bool {
		return mustShow(t, g, c.info.ID).Internal.KeyEpoch >= 2
	})
	var byPackets int
	evs, _ := g.events.since(context.Background(), 0, 1000, 0)
	for _, e := range evs {
		if e.Type == EventRekeyed && e.Leg == "cloud" && e.Reason == triggerPackets {
			byPackets++
		}
	}
	if byPackets != 2 {
		t.Errorf("%d packet-count re-keys on the cloud leg for 50 packets every 20, want 2", byPackets)
	}
}

func durationOf(d time.Duration) config.Duration { return config.Duration(d) }

// TestPeerRekeyToMKI: a peer that moves from a key without MKI to keys
// with MKIs (two in one line) is accepted with all three during the grace
// period.
func TestPeerRekeyToMKI(t *testing.T) {
	g := startGateway(t, testConfig())
	c := newCall(t, g, suiteAES128SHA80, suiteAES128SHA80, true)
	old := contextFor(t, c.kInt, false)
	rx := contextFor(t, c.info.Cloud.Crypto, true)
	seq := uint16(1)
	send := func(ctx *srtp.Context) {
		p := rtpPacket(t, 9, seq, 100)
		seq++
		c.intRTP.send(c.info.Internal.Local, encRTP(t, ctx, p))
		mustRecvRTP(t, c.cloudRTP, rx, p)
	}
	send(old)
	k1 := strings.TrimPrefix(newKeyLine(t, suiteAES128SHA80), "a=crypto:1 AES_CM_128_HMAC_SHA1_80 ")
	k2 := strings.TrimPrefix(newKeyLine(t, suiteAES128SHA80), "a=crypto:1 AES_CM_128_HMAC_SHA1_80 ")
	line := "a=crypto:1 AES_CM_128_HMAC_SHA1_80 " + k1 + "|2^31|1:2;" + k2 + "|2^31|2:2"
	if _, err := g.Update(context.Background(), c.info.ID, UpdateRequest{Internal: &LegUpdate{Crypto: line}}); err != nil {
		t.Fatal(err)
	}
	m1 := contextFor(t, "a=crypto:1 AES_CM_128_HMAC_SHA1_80 "+k1+"|2^31|1:2", false)
	m2 := contextFor(t, "a=crypto:1 AES_CM_128_HMAC_SHA1_80 "+k2+"|2^31|2:2", false)
	for _, ctx := range []*srtp.Context{m1, old, m2, m1, old, m2} {
		send(ctx)
	}
	if a := mustShow(t, g, c.info.ID).Internal.Counters.AuthFailures; a != 0 {
		t.Errorf("%d auth failures", a)
	}
}
