package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"
)

// TestBadPacketsAreDroppedAndCounted sends what an attacker or a broken
// peer sends (a wrong key, a replayed index, a truncated header, random
// bytes, a valid packet from another address) and checks that none is
// forwarded, each is counted, and none moves the latched remote.
func TestBadPacketsAreDroppedAndCounted(t *testing.T) {
	for _, mode := range []PortMode{PortsDedicated, PortsShared} {
		t.Run(string(mode), func(t *testing.T) {
			cfg := testConfig()
			cfg.Internal.PortMode, cfg.Cloud.PortMode = mode, mode
			g := startGateway(t, cfg)
			c := newCall(t, g, suiteAES128SHA80, suiteAES128SHA80, true)
			attacker := newPeer(t)
			to := c.info.Internal.Local
			tx := contextFor(t, c.kInt, false)
			rx := contextFor(t, c.info.Cloud.Crypto, true)
			wrong := contextFor(t, newKeyLine(t, suiteAES128SHA80), false)
			junk := make([]byte, 200)
			_, _ = rand.Read(junk)
			junk[0] &^= 0xc0 // RTP version 0: malformed, whatever follows

			// Before latching: nothing may latch the leg but an
			// authenticated packet.
			attacker.send(to, encRTP(t, wrong, rtpPacket(t, 0x5eed, 1, 160)))
			attacker.send(to, junk)
			attacker.send(to, rtpPacket(t, 0x5eed, 2, 160)[:5])
			c.cloudRTP.expectNothing(100 * time.Millisecond)
			info := mustShow(t, g, c.info.ID)
			if info.Internal.Remote != "" || info.Internal.Latched {
				t.Fatalf("internal leg latched to %q by unauthenticated packets", info.Internal.Remote)
			}
			if mode == PortsDedicated {
				ct := info.Internal.Counters
				if ct.AuthFailures != 1 || ct.Malformed != 2 {
					t.Errorf("auth_failures=%d malformed=%d, want 1 and 2", ct.AuthFailures, ct.Malformed)
				}
			}

			// The real peer latches the leg.
			p1 := encRTP(t, tx, rtpPacket(t, 0x5eed, 10, 160))
			c.intRTP.send(to, p1)
			mustRecvRTP(t, c.cloudRTP, rx, rtpPacket(t, 0x5eed, 10, 160))

			// Replay from the peer's own address.
			c.intRTP.send(to, p1)
			// A valid, never seen packet from another address.
			p2 := encRTP(t, tx, rtpPacket(t, 0x5eed, 11, 160))
			attacker.send(to, p2)
			// Wrong key and junk from the peer's own address.
			c.intRTP.send(to, encRTP(t, wrong, rtpPacket(t, 0x5eed, 12, 160)))
			c.intRTP.send(to, junk[:11])
			c.cloudRTP.expectNothing(100 * time.Millisecond)

			info = mustShow(t, g, c.info.ID)
			if info.Internal.Remote != c.intRTP.addr() {
				t.Fatalf("internal remote moved to %q, want %s", info.Internal.Remote, c.intRTP.addr())
			}
			ct := info.Internal.Counters
			if ct.Replays != 1 {
				t.Errorf("replays = %d, want 1", ct.Replays)
			}
			if mode == PortsDedicated {
				if ct.WrongSource != 1 || ct.AuthFailures != 2 || ct.Malformed != 3 {
					t.Errorf("wrong_source=%d auth_failures=%d malformed=%d, want 1, 2, 3", ct.WrongSource, ct.AuthFailures, ct.Malformed)
				}
			}
			if ct.PacketsIn != 1 || info.Cloud.Counters.PacketsOut != 1 {
				t.Errorf("packets_in=%d, cloud packets_out=%d, want 1 and 1", ct.PacketsIn, info.Cloud.Counters.PacketsOut)
			}
			// The packet the attacker relayed is still good from the
			// peer itself: nothing consumed its index.
			c.intRTP.send(to, p2)
			mustRecvRTP(t, c.cloudRTP, rx, rtpPacket(t, 0x5eed, 11, 160))
		})
	}
}

// TestNonSymmetricLegAcceptsButDoesNotMove: with symmetric off, an
// authenticated packet from a new address passes, and the remote stays.
func TestNonSymmetricLegAcceptsButDoesNotMove(t *testing.T) {
	cfg := testConfig()
	cfg.Internal.Symmetric = false
	g := startGateway(t, cfg)
	c := newCall(t, g, suiteAEAD128, suiteAES256SHA32, true)
	tx := contextFor(t, c.kInt, false)
	rx := contextFor(t, c.info.Cloud.Crypto, true)
	c.intRTP.send(c.info.Internal.Local, encRTP(t, tx, rtpPacket(t, 9, 1, 160)))
	mustRecvRTP(t, c.cloudRTP, rx, rtpPacket(t, 9, 1, 160))
	other := newPeer(t)
	other.send(c.info.Internal.Local, encRTP(t, tx, rtpPacket(t, 9, 2, 160)))
	mustRecvRTP(t, c.cloudRTP, rx, rtpPacket(t, 9, 2, 160))
	if info := mustShow(t, g, c.info.ID); info.Internal.Remote != c.intRTP.addr() {
		t.Fatalf("remote moved to %s", info.Internal.Remote)
	}
}

func TestSessionLimitsAndErrors(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSessions = 2
	g := startGateway(t, cfg)
	ctx := context.Background()
	k := func() string { return newKeyLine(t, suiteAES128SHA80) }
	for i := 0; i < 2; i++ {
		mustCreate(t, g, CreateRequest{Internal: LegRequest{Crypto: k()}, Cloud: LegRequest{Crypto: k()}})
	}
	if _, err := g.Create(ctx, CreateRequest{Internal: LegRequest{Crypto: k()}, Cloud: LegRequest{Crypto: k()}}); err == nil {
		t.Fatal("third session created with max_sessions 2")
	}
	same := k()
	for _, tc := range []struct {
		name string
		req  CreateRequest
	}{
		{"missing key", CreateRequest{Internal: LegRequest{}, Cloud: LegRequest{Crypto: k()}}},
		{"same key on both legs", CreateRequest{Internal: LegRequest{Crypto: same}, Cloud: LegRequest{Crypto: same}}},
		{"null suite", CreateRequest{Internal: LegRequest{Crypto: newKeyLine(t, suiteNullSHA80)}, Cloud: LegRequest{Crypto: k()}}},
		{"bad remote", CreateRequest{Internal: LegRequest{Crypto: k(), Remote: "example.com:5"}, Cloud: LegRequest{Crypto: k()}}},
		{"bad id", CreateRequest{ID: "a b", Internal: LegRequest{Crypto: k()}, Cloud: LegRequest{Crypto: k()}}},
		{"unknown own suite", CreateRequest{Internal: LegRequest{Crypto: k(), Suite: "ROT13"}, Cloud: LegRequest{Crypto: k()}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := g.Create(ctx, tc.req)
			var re *RequestError
			if err == nil || !errors.As(err, &re) {
				t.Fatalf("err = %v, want a RequestError", err)
			}
		})
	}
}
