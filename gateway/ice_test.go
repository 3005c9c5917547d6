package gateway

import (
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// TestNGICELite: with ICE force the callee is offered an ICE-lite
// mediaedge (a=ice-lite, ufrag, password, one host candidate per
// component). A connectivity check signed with that password gets a
// success response (XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT),
// and its nomination moves the leg's remote address, where media then
// goes; a check with a wrong password gets 401 and moves nothing.
func TestNGICELite(t *testing.T) {
	g := startGateway(t, ngConfig())
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, b := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	offer := ngDo(t, c, map[string]any{"command": "offer", "call-id": "ice@test", "from-tag": "a", "sdp": a.sdp("RTP/SAVP"), "ICE": "force"})
	sdp := offer.Str("sdp")
	toB := mediaOf(t, offer)
	ufrag := regexp.MustCompile(`a=ice-ufrag:(\S+)`).FindStringSubmatch(sdp)
	pwd := regexp.MustCompile(`a=ice-pwd:(\S+)`).FindStringSubmatch(sdp)
	cands := regexp.MustCompile(`a=candidate:(\d) (\d) UDP (\d+) (\S+) (\d+) typ host`).FindAllStringSubmatch(sdp, -1)
	if ufrag == nil || pwd == nil || len(pwd[1]) < 22 || !regexp.MustCompile(`(?m)^a=ice-lite\r$`).MatchString(sdp) || len(cands) != 2 {
		t.Fatalf("no ICE-lite in the offer:\n%s", sdp)
	}
	if cands[0][5] != strconv.Itoa(toB.Port) || cands[1][5] != strconv.Itoa(toB.RTCPPort) {
		t.Errorf("candidates %v for ports %d/%d", cands, toB.Port, toB.RTCPPort)
	}
	var gwB ngKey
	for _, line := range toB.Crypto {
		if k, err := parseNGKey(line); err == nil && k.Suite.Name == "AES_CM_128_HMAC_SHA1_80" {
			gwB = k
			break
		}
	}
	toA := mediaOf(t, ngDo(t, c, map[string]any{"command": "answer", "call-id": "ice@test", "from-tag": "a", "to-tag": "b", "sdp": b.sdp("RTP/SAVP")}))
	target := netip.AddrPortFrom(toB.Addr, uint16(toB.Port))

	check := func(from *net.UDPConn, password string) *stun.Message {
		t.Helper()
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewUsername(ufrag[1]+":peer"),
			rawAttr(stun.AttrICEControlling, make([]byte, 8)),
			rawAttr(stun.AttrUseCandidate, nil), stun.NewShortTermIntegrity(password), stun.Fingerprint)
		if _, err := from.WriteToUDPAddrPort(req.Raw, target); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		_ = from.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := from.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("no answer to the check: %v", err)
		}
		res := &stun.Message{Raw: buf[:n]}
		if err := res.Decode(); err != nil || res.TransactionID != req.TransactionID {
			t.Fatalf("answer: %v", err)
		}
		if err := stun.Fingerprint.Check(res); err != nil {
			t.Errorf("answer without a valid FINGERPRINT: %v", err)
		}
		return res
	}
	// A wrong password: 401, the remote stays.
	wrong := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	res := check(wrong.conn, "not-the-password-at-all-0123")
	var code stun.ErrorCodeAttribute
	if res.Type != stun.BindingError || code.GetFrom(res) != nil || code.Code != stun.CodeUnauthorized {
		t.Errorf("wrong password answered %v %v", res.Type, code)
	}
	if r := mustSessions(t, g)[0].Cloud.Remote; r != b.addr().String() {
		t.Errorf("the remote moved to %s after a failed check", r)
	}
	// No MESSAGE-INTEGRITY: 400, nothing moves.
	bare := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewUsername(ufrag[1]+":peer"), rawAttr(stun.AttrUseCandidate, nil), stun.Fingerprint)
	if _, err := wrong.conn.WriteToUDPAddrPort(bare.Raw, target); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = wrong.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, _, err := wrong.conn.ReadFromUDPAddrPort(buf); err != nil {
		t.Errorf("no answer to a check without MESSAGE-INTEGRITY: %v", err)
	} else {
		res := &stun.Message{Raw: buf[:n]}
		var code stun.ErrorCodeAttribute
		if res.Decode() != nil || code.GetFrom(res) != nil || code.Code != stun.CodeBadRequest {
			t.Errorf("a check without MESSAGE-INTEGRITY answered %v", code)
		}
	}
	// The right password from a new address: success, and the remote moves.
	moved := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	res = check(moved.conn, pwd[1])
	var xor stun.XORMappedAddress
	if res.Type != stun.BindingSuccess || xor.GetFrom(res) != nil || xor.Port != int(moved.addr().Port()) {
		t.Fatalf("right password answered %v, mapped %v", res.Type, xor)
	}
	if err := stun.NewShortTermIntegrity(pwd[1]).Check(res); err != nil {
		t.Errorf("success response without a valid MESSAGE-INTEGRITY: %v", err)
	}
	if r := mustSessions(t, g)[0].Cloud.Remote; r != moved.addr().String() {
		t.Errorf("remote %s after the nomination, want %s", r, moved.addr())
	}
	through(t, a, moved, a.key, gwB, netip.AddrPortFrom(toA.Addr, uint16(toA.Port)), 1, 3)
}

// rawAttr adds an attribute with the given value.
type rawAttrSetter struct {
	t stun.AttrType
	v []byte
}

func rawAttr(t stun.AttrType, v []byte) stun.Setter { return rawAttrSetter{t, v} }

func (r rawAttrSetter) AddTo(m *stun.Message) error {
	m.Add(r.t, r.v)
	return nil
}

// TestNGICELiteByLegConfig: a leg with ice_lite gets ICE-lite in every ng
// call without the flag; the other leg does not.
func TestNGICELiteByLegConfig(t *testing.T) {
	cfg := ngConfig()
	cfg.Cloud.ICELite = true
	g := startGateway(t, cfg)
	c, err := dialNG(g.NGAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, b := newNGEnd(t, "AES_CM_128_HMAC_SHA1_80"), newNGEnd(t, "AES_CM_128_HMAC_SHA1_80")
	// Default direction: the caller is internal, the callee cloud.
	toCloud := ngDo(t, c, map[string]any{"command": "offer", "call-id": "icecfg@test", "from-tag": "a", "sdp": a.sdp("RTP/SAVP")}).Str("sdp")
	toInternal := ngDo(t, c, map[string]any{"command": "answer", "call-id": "icecfg@test", "from-tag": "a", "to-tag": "b", "sdp": b.sdp("RTP/SAVP")}).Str("sdp")
	lite := regexp.MustCompile(`(?m)^a=ice-lite\r$`)
	if !lite.MatchString(toCloud) || !regexp.MustCompile(`a=ice-pwd:\S{22,}`).MatchString(toCloud) {
		t.Errorf("the cloud leg's offer has no ICE-lite:\n%s", toCloud)
	}
	if lite.MatchString(toInternal) || regexp.MustCompile(`a=(ice-|candidate)`).MatchString(toInternal) {
		t.Errorf("the internal leg's answer has ICE:\n%s", toInternal)
	}
}
