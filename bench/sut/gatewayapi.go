package sut

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"

	"github.com/mediaedge/mediaedge/bench/load"
	"github.com/mediaedge/mediaedge/bench/srtpcheck"
)

// The gateway's session API, as a client sees it (docs/gateway.md). bench
// keeps its own copy of these shapes: it drives the daemon over the wire
// like any other client and never imports the gateway package.

// legRequest asks for one leg of a session.
type legRequest struct {
	Remote      string `json:"remote,omitempty"`
	RemoteRTCP  string `json:"remote_rtcp,omitempty"`
	RTCPMux     bool   `json:"rtcp_mux"`
	Crypto      string `json:"crypto,omitempty"`
	Suite       string `json:"suite,omitempty"`
	KeyLifetime uint64 `json:"key_lifetime,omitempty"`
	MKI         bool   `json:"mki,omitempty"`
}

// sessionRequest is the body of POST /v1/sessions.
type sessionRequest struct {
	ID       string     `json:"id,omitempty"`
	Internal legRequest `json:"internal"`
	Cloud    legRequest `json:"cloud"`
}

// LegCounters are a leg's packet counters.
type LegCounters struct {
	PacketsIn    int64 `json:"packets_in"`
	PacketsOut   int64 `json:"packets_out"`
	BytesIn      int64 `json:"bytes_in"`
	BytesOut     int64 `json:"bytes_out"`
	AuthFailures int64 `json:"auth_failures"`
	Replays      int64 `json:"replays"`
	Malformed    int64 `json:"malformed"`
}

// Leg is one leg of a session as the gateway reports it. Crypto (the
// gateway's own outbound key on this leg) is present only in the answers
// to create and rekey.
type Leg struct {
	Local     string      `json:"local"`
	LocalRTCP string      `json:"local_rtcp"`
	Remote    string      `json:"remote"`
	Crypto    string      `json:"crypto,omitempty"`
	Suite     string      `json:"suite"`
	KeyEpoch  int         `json:"key_epoch"`
	ROC       uint32      `json:"roc"`
	Counters  LegCounters `json:"counters"`
}

// Session is a gateway session.
type Session struct {
	ID       string `json:"id"`
	Internal Leg    `json:"internal"`
	Cloud    Leg    `json:"cloud"`
}

// rekeyResponse is the answer to POST /v1/sessions/{id}/rekey.
type rekeyResponse struct {
	Leg      string `json:"leg"`
	Crypto   string `json:"crypto"`
	KeyEpoch int    `json:"key_epoch"`
}

// APIClient is what bench needs of a control API client;
// *control.Client satisfies it.
type APIClient interface {
	Do(ctx context.Context, method, path string, in, out any) error
}

// GatewaySetup describes the sessions bench creates on a gateway.
type GatewaySetup struct {
	// Sessions is the number of sessions, one stream per direction each.
	Sessions int
	// Suite is the suite of bench's own keys (both peers).
	Suite srtpcheck.Suite
	// CloudSuite, when set, asks the gateway for a different suite on the
	// cloud leg's outbound key.
	CloudSuite string
	// Internal and Cloud are bench's peer sockets: where the gateway sends
	// each leg's output.
	Internal, Cloud netip.AddrPort
	// IDPrefix prefixes the session IDs (default "bench-").
	IDPrefix string
}

// GatewaySessions are sessions created on a gateway for a run. Close
// deletes them.
type GatewaySessions struct {
	c   APIClient
	IDs []string
	// Flows are the run's flows: internal->cloud and cloud->internal for
	// every session.
	Flows []load.Flow
}

// SetupGateway creates the sessions and returns the flows that drive them:
// the internal peer encrypts with its own key K_int towards internal.local,
// and what leaves the cloud leg is decrypted with the gateway's cloud key;
// the reverse likewise. On error the sessions created so far are deleted.
func SetupGateway(ctx context.Context, c APIClient, g GatewaySetup) (*GatewaySessions, error) {
	if g.Sessions < 1 {
		return nil, optionError("need at least one session")
	}
	if g.IDPrefix == "" {
		g.IDPrefix = "bench-"
	}
	gs := &GatewaySessions{c: c}
	for i := 0; i < g.Sessions; i++ {
		kInt, err1 := srtpcheck.NewKey(g.Suite)
		kCloud, err2 := srtpcheck.NewKey(g.Suite)
		if err := errors.Join(err1, err2); err != nil {
			gs.Close(ctx)
			return nil, err
		}
		req := sessionRequest{
			ID:       fmt.Sprintf("%s%d", g.IDPrefix, i),
			Internal: legRequest{Remote: g.Internal.String(), RTCPMux: true, Crypto: kInt.CryptoLine()},
			Cloud:    legRequest{Remote: g.Cloud.String(), RTCPMux: true, Crypto: kCloud.CryptoLine(), Suite: g.CloudSuite},
		}
		var s Session
		if err := c.Do(ctx, "POST", "/v1/sessions", req, &s); err != nil {
			gs.Close(ctx)
			return nil, fmt.Errorf("sut: creating session %d: %w", i, err)
		}
		gs.IDs = append(gs.IDs, s.ID)
		fl, err := sessionFlows(s, kInt, kCloud, g)
		if err != nil {
			gs.Close(ctx)
			return nil, fmt.Errorf("sut: session %s: %w", s.ID, err)
		}
		gs.Flows = append(gs.Flows, fl...)
	}
	return gs, nil
}

func sessionFlows(s Session, kInt, kCloud srtpcheck.Key, g GatewaySetup) ([]load.Flow, error) {
	intLocal, err := netip.ParseAddrPort(s.Internal.Local)
	if err != nil {
		return nil, fmt.Errorf("internal.local %q: %w", s.Internal.Local, err)
	}
	cloudLocal, err := netip.ParseAddrPort(s.Cloud.Local)
	if err != nil {
		return nil, fmt.Errorf("cloud.local %q: %w", s.Cloud.Local, err)
	}
	gInt, err := srtpcheck.ParseCryptoLine(s.Internal.Crypto)
	if err != nil {
		return nil, fmt.Errorf("internal.crypto: %w", err)
	}
	gCloud, err := srtpcheck.ParseCryptoLine(s.Cloud.Crypto)
	if err != nil {
		return nil, fmt.Errorf("cloud.crypto: %w", err)
	}
	return []load.Flow{
		{Direction: "internal->cloud", TxKey: kInt, RxKey: gCloud, Src: g.Internal.String(), Target: intLocal, Recv: g.Cloud.String()},
		{Direction: "cloud->internal", TxKey: kCloud, RxKey: gInt, Src: g.Cloud.String(), Target: cloudLocal, Recv: g.Internal.String()},
	}, nil
}

// Rekey asks the gateway to re-key its outbound direction on one leg
// ("internal" or "cloud") of session i and returns the new key.
func (gs *GatewaySessions) Rekey(ctx context.Context, i int, leg string) (srtpcheck.Key, error) {
	if i < 0 || i >= len(gs.IDs) {
		return srtpcheck.Key{}, optionError("no session %d", i)
	}
	var res rekeyResponse
	if err := gs.c.Do(ctx, "POST", "/v1/sessions/"+url.PathEscape(gs.IDs[i])+"/rekey", map[string]string{"leg": leg}, &res); err != nil {
		return srtpcheck.Key{}, fmt.Errorf("sut: re-keying session %s %s leg: %w", gs.IDs[i], leg, err)
	}
	return srtpcheck.ParseCryptoLine(res.Crypto)
}

// RekeyFlow is an SRTPOptions.Rekey for the flows of SetupGateway: flow
// 2i (internal->cloud) leaves on session i's cloud leg, flow 2i+1 on its
// internal leg.
func (gs *GatewaySessions) RekeyFlow(ctx context.Context, flow int) (srtpcheck.Key, bool, error) {
	leg := "cloud"
	if flow%2 == 1 {
		leg = "internal"
	}
	k, err := gs.Rekey(ctx, flow/2, leg)
	return k, err == nil, err
}

// Counters sums the gateway's own counters over the sessions.
func (gs *GatewaySessions) Counters(ctx context.Context) (internal, cloud LegCounters, err error) {
	for _, id := range gs.IDs {
		var s Session
		if err := gs.c.Do(ctx, "GET", "/v1/sessions/"+url.PathEscape(id), nil, &s); err != nil {
			return internal, cloud, err
		}
		addCounters(&internal, s.Internal.Counters)
		addCounters(&cloud, s.Cloud.Counters)
	}
	return internal, cloud, nil
}

func addCounters(a *LegCounters, b LegCounters) {
	a.PacketsIn += b.PacketsIn
	a.PacketsOut += b.PacketsOut
	a.BytesIn += b.BytesIn
	a.BytesOut += b.BytesOut
	a.AuthFailures += b.AuthFailures
	a.Replays += b.Replays
	a.Malformed += b.Malformed
}

// Close deletes every session; it returns the first error.
func (gs *GatewaySessions) Close(ctx context.Context) error {
	var first error
	for _, id := range gs.IDs {
		if err := gs.c.Do(ctx, "DELETE", "/v1/sessions/"+url.PathEscape(id), nil, nil); err != nil && first == nil {
			first = fmt.Errorf("sut: deleting session %s: %w", id, err)
		}
	}
	gs.IDs = nil
	return first
}
