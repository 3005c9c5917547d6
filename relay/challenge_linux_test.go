package relay

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

func TestUnauthenticatedRequest(t *testing.T) {
	build := func(setters ...stun.Setter) []byte {
		return stun.MustBuild(append([]stun.Setter{stun.TransactionID}, setters...)...).Raw
	}
	alloc := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	for _, tc := range []struct {
		name string
		raw  []byte
		want bool
	}{
		{"allocate without credentials", build(alloc, stun.NewSoftware("x")), true},
		{"allocate signed", build(alloc, stun.NewUsername("u"), stun.NewRealm("r"), stun.NewNonce("n"), stun.NewLongTermIntegrity("u", "r", "p")), false},
		{"binding", build(stun.BindingRequest), false},
		{"error response", build(stun.NewType(stun.MethodAllocate, stun.ClassErrorResponse)), false},
		{"indication", build(stun.NewType(stun.MethodSend, stun.ClassIndication)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unauthenticatedRequest(tc.raw); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestChallengesRateLimited floods the relay with unauthenticated Allocate
// requests from one source and checks that the 401 answers stay within the
// source's rate and burst while every request is counted, answered or
// dropped. Before the fix every request got its (larger) answer, uncounted.
func TestChallengesRateLimited(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Limits.ChallengesPerSource = 5 // burst 10
	r := startRelay(t, cfg)
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const sent = 200
	type answers struct {
		n    int
		last time.Time
	}
	received := make(chan answers)
	go func() {
		var a answers
		buf := make([]byte, 1500)
		for {
			// Quiet for a second after the last answer: done.
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			k, err := conn.Read(buf)
			if err != nil {
				received <- a
				return
			}
			m := &stun.Message{Raw: buf[:k]}
			if m.Decode() == nil && errorCode(m) == 401 {
				a.n++
				a.last = time.Now()
			}
		}
	}()
	to := net.UDPAddrFromAddrPort(r.udp)
	t0 := time.Now()
	for range sent {
		m := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
			stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}})
		if _, err := conn.WriteTo(m.Raw, to); err != nil {
			t.Fatal(err)
		}
	}
	a := <-received
	got := a.n
	// The relay answered within [t0, last answer]: its buckets refilled
	// for no longer than that, however slowly a busy machine served them.
	elapsed := a.last.Sub(t0)
	if max := 10 + int(5*elapsed.Seconds()) + 1; got < 10 || got > max {
		t.Errorf("401 answers = %d for %d requests in %v, want 10 to %d", got, sent, elapsed, max)
	}
	testutil.WaitFor(t, "every request to be counted", 10*time.Second, func() bool {
		return r.metric(t, "mediaedge_relay_unauthenticated_requests_total")+
			r.metric(t, "mediaedge_relay_unauthenticated_requests_dropped_total") == sent
	})
	if a := r.metric(t, "mediaedge_relay_unauthenticated_requests_total"); int(a) != got {
		t.Errorf("answered counter = %v, received %d", a, got)
	}
}
