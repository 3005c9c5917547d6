package gateway

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/gateway/ng"
)

// FuzzNGRequest feeds whole request datagrams to the ng server of a
// running gateway: whatever comes in is answered or dropped, never a
// panic, and freeing the calls it made leaves no session behind.
func FuzzNGRequest(f *testing.F) {
	seed := func(d map[string]any) []byte {
		b, err := ng.Reply("c1", d)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(seed(map[string]any{"command": "ping"}))
	f.Add(seed(map[string]any{"command": "offer", "call-id": "x", "from-tag": "a", "sdp": testOfferSDP,
		"replace": []any{"origin"}, "SDES": []any{"no-AEAD_AES_256_GCM"}, "rtcp-mux": []any{"offer"}, "ICE": "force"}))
	f.Add(seed(map[string]any{"command": "answer", "call-id": "x", "from-tag": "a", "to-tag": "b", "sdp": testOfferSDP}))
	f.Add(seed(map[string]any{"command": "delete", "call-id": "x", "delete-delay": int64(3)}))
	f.Add(seed(map[string]any{"command": "query", "call-id": "x"}))
	f.Add([]byte("c1 d7:command4:pinge"))
	// WebRTC: a browser's offer (DTLS, BUNDLE, ICE) toward SIP, and a
	// SIP offer toward a browser.
	chrome, err := os.ReadFile("ng/testdata/chrome-offer.sdp")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed(map[string]any{"command": "offer", "call-id": "w", "from-tag": "a", "sdp": string(chrome),
		"transport-protocol": "RTP/SAVP", "DTLS": "off", "ICE": "remove", "rtcp-mux": []any{"demux"}}))
	f.Add(seed(map[string]any{"command": "offer", "call-id": "w", "from-tag": "a", "sdp": testOfferSDP,
		"transport-protocol": "UDP/TLS/RTP/SAVPF", "DTLS": "passive", "ICE": "force", "rtcp-mux": []any{"require"}, "SDES": []any{"off"}}))
	f.Add(seed(map[string]any{"command": "answer", "call-id": "w", "from-tag": "a", "to-tag": "b", "sdp": string(chrome),
		"transport-protocol": "UDP/TLS/RTP/SAVPF", "ICE": "force", "DTLS": "active"}))
	cfg := ngConfig()
	cfg.NG.RatePerSource = 1_000_000 // the fuzzer is one fast source
	g := startGateway(f, cfg)
	src := netip.MustParseAddrPort("127.0.0.1:5060")
	f.Fuzz(func(t *testing.T, b []byte) {
		s := g.ng
		// Two requests: the fuzzed one, then an answer to whatever call
		// it may have offered, so that both paths see fuzzed state.
		_ = s.handle(b, src, time.Now())
		_ = s.handle(append([]byte("z2 "), b[min(len(b), 3):]...), src, time.Now())
		s.mu.Lock()
		for id, c := range s.calls {
			s.freeCallLocked(c)
			delete(s.calls, id)
		}
		s.cache.init()
		s.mu.Unlock()
		if n := len(mustSessions(t, g)); n != 0 {
			t.Fatalf("%d sessions left after freeing every call", n)
		}
	})
}
