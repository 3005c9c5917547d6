package sut

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/bench/benchtest"
	"github.com/mediaedge/mediaedge/bench/load"
	"github.com/mediaedge/mediaedge/bench/srtpcheck"
	"github.com/mediaedge/mediaedge/internal/control"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

func TestGatewayAPIRun(t *testing.T) {
	fake := &benchtest.FakeGateway{}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	defer fake.Close()
	c := control.NewClient(srv.URL, "")
	defer c.Close()

	ic, cc := testutil.ListenUDP(t), testutil.ListenUDP(t)
	suite, _ := srtpcheck.LookupSuite("AES_CM_128_HMAC_SHA1_80")
	ctx := context.Background()
	gs, err := SetupGateway(ctx, c, GatewaySetup{Sessions: 4, Suite: suite, Internal: testutil.AddrOf(ic), Cloud: cc.LocalAddr().(*net.UDPAddr).AddrPort()})
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
	rep, err := load.RunSRTP(ctx, gs.Flows, load.SRTPOptions{Target: "fake gateway", Conns: []*net.UDPConn{ic, cc}, Rate: 4000, Count: 100, RTCP: 1, MaxTime: 20 * time.Second})
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
	suite, _ := srtpcheck.LookupSuite("AES_256_CM_HMAC_SHA1_80")
	ap := testutil.AddrOf(listenLoopbackClosed(t))
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
	c := testutil.ListenUDP(t)
	c.Close()
	return c
}
