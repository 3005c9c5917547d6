package bench

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/bench/benchtest"
	"github.com/mediaedge/mediaedge/internal/control"
)

func TestGatewayAPIRun(t *testing.T) {
	fake := &benchtest.FakeGateway{}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	defer fake.Close()
	c := control.NewClient(srv.URL, "")
	defer c.Close()

	ic, cc := listenLoopback(t), listenLoopback(t)
	suite, _ := LookupSuite("AES_CM_128_HMAC_SHA1_80")
	ctx := context.Background()
	gs, err := SetupGateway(ctx, c, GatewaySetup{Sessions: 4, Suite: suite, Internal: addrOf(ic), Cloud: cc.LocalAddr().(*net.UDPAddr).AddrPort()})
	if err != nil {
		t.Fatal(err)
	}
	if len(gs.Flows) != 8 || fake.Len() != 4 {
		t.Fatalf("%d flows, %d sessions", len(gs.Flows), fake.Len())
	}
	// Legs never share a key: what the internal peer sends with is not
	// what the cloud peer is given to decrypt with.
	for _, f := range gs.Flows {
		if string(f.TxKey.Master) == string(f.RxKey.Master) {
			t.Fatal("a flow decrypts with its own sending key")
		}
	}
	rep, err := RunSRTP(ctx, gs.Flows, SRTPOptions{Target: "fake gateway", Conns: []*net.UDPConn{ic, cc}, Rate: 4000, Count: 100, RTCP: 1, MaxTime: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		var b strings.Builder
		rep.WriteTable(&b)
		t.Fatalf("run through the fake gateway failed:\n%s", b.String())
	}
	in, cl, err := gs.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if in.PacketsOut+cl.PacketsOut == 0 {
		t.Error("gateway counters read as zero")
	}
	if err := gs.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if fake.Len() != 0 {
		t.Errorf("%d sessions left after Close", fake.Len())
	}
}

func TestGatewayAPIErrors(t *testing.T) {
	fake := &benchtest.FakeGateway{}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	defer fake.Close()
	c := control.NewClient(srv.URL, "")
	defer c.Close()
	// AES-256 is refused by the fake: the first session fails and
	// nothing is left behind.
	suite, _ := LookupSuite("AES_256_CM_HMAC_SHA1_80")
	ap := addrOf(listenLoopbackClosed(t))
	_, err := SetupGateway(context.Background(), c, GatewaySetup{Sessions: 2, Suite: suite, Internal: ap, Cloud: ap})
	var apiErr *control.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != control.CodeBadRequest {
		t.Fatalf("err = %v, want a bad_request API error", err)
	}
	if fake.Len() != 0 {
		t.Errorf("%d sessions left", fake.Len())
	}
}

func listenLoopbackClosed(t *testing.T) *net.UDPConn {
	c := listenLoopback(t)
	c.Close()
	return c
}

func TestSpecFlows(t *testing.T) {
	spec := `{"pid": 42, "peer": "fwd", "streams": [
	 {"name": "call0:a2b", "tx_suite": "AES_CM_128_HMAC_SHA1_80", "tx_key": "` + strings.Repeat("A", 40) + `",
	  "rx_suite": "AES_CM_128_HMAC_SHA1_32", "rx_key": "` + strings.Repeat("B", 40) + `",
	  "src": "127.0.0.1:31000", "target": "127.0.0.1:20030", "recv": "127.0.0.1:31100",
	  "rtcp_target": "127.0.0.1:20031", "extra": true}]}`
	s, err := ReadSpec(strings.NewReader(spec))
	if err != nil {
		t.Fatal(err)
	}
	fl, err := s.Flows()
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != 42 || len(fl) != 1 || fl[0].Direction != "a2b" || fl[0].RxKey.Suite.TagLen != 4 || fl[0].RTCPTarget.Port() != 20031 {
		t.Fatalf("spec read as %+v %+v", s, fl)
	}
	for _, bad := range []string{
		`{"streams": []}`,
		`{"streams": [{"tx_key": "AAAA", "rx_key": "AAAA", "target": "127.0.0.1:1", "recv": "127.0.0.1:2"}]}`,
		`{"streams": [{"tx_key": "` + strings.Repeat("A", 40) + `", "rx_key": "` + strings.Repeat("A", 40) + `", "target": "nowhere", "recv": "127.0.0.1:2"}]}`,
		`not json`,
	} {
		s, err := ReadSpec(strings.NewReader(bad))
		if err == nil {
			_, err = s.Flows()
		}
		if err == nil {
			t.Errorf("spec %s accepted", bad)
		}
	}
}

func TestParseCryptoLine(t *testing.T) {
	k40 := strings.Repeat("A", 40)
	tests := []struct {
		in     string
		ok     bool
		suite  string
		tag    int
		mkiLen int
	}{
		{"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + k40, true, "AES_CM_128_HMAC_SHA1_80", 1, 0},
		{"2 AES_CM_128_HMAC_SHA1_32 inline:" + k40 + "|2^31|1:4", true, "AES_CM_128_HMAC_SHA1_32", 2, 4},
		{"1 AEAD_AES_128_GCM inline:" + strings.Repeat("A", 38) + "==", true, "AEAD_AES_128_GCM", 1, 0},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:AAAA", false, "", 0, 0},
		{"1 NO_SUCH_SUITE inline:" + k40, false, "", 0, 0},
		{"1 AES_CM_128_HMAC_SHA1_80 " + k40, false, "", 0, 0},
		{"x AES_CM_128_HMAC_SHA1_80 inline:" + k40, false, "", 0, 0},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + k40 + "|1:999", false, "", 0, 0},
	}
	for _, tc := range tests {
		k, err := ParseCryptoLine(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrBadKey) || strings.Contains(err.Error(), k40) {
				t.Errorf("%q: error %v not ErrBadKey or shows the key", tc.in, err)
			}
			continue
		}
		if k.Suite.Name != tc.suite || k.Tag != tc.tag || len(k.MKI) != tc.mkiLen {
			t.Errorf("%q: %s tag %d mki %d", tc.in, k.Suite.Name, k.Tag, len(k.MKI))
		}
		if strings.Contains(k.String(), k40) || strings.Contains(k.String(), k.Inline()) {
			t.Error("String shows the key")
		}
		if k2, err := ParseCryptoLine(k.CryptoLine()); err != nil || k2.Inline() != k.Inline() {
			t.Errorf("CryptoLine does not round-trip: %v", err)
		}
	}
}
