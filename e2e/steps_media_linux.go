package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mediaedge/mediaedge/bench"
)

func sortedAddrs(m map[netip.Addr]int) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

func (s *scenario) flows() []*Flow {
	return []*Flow{s.turnUp, s.turnDown, s.turn6Up, s.turn6Down, s.gwUp, s.gwDown,
		s.directUp, s.directDown, s.direct6Up, s.direct6Down}
}

func (s *scenario) pause(v bool) {
	for _, p := range s.peers {
		p.Pause(v)
	}
}

// stepMediaWindow measures MediaWindow of audio with the edge's interface
// counters and captures on lan0 and wan0, and decides three checks: the
// path, the keys seen on the uplink, and the audio.
func (s *scenario) stepMediaWindow(ctx context.Context) error {
	path := newChecker("the relayed, the re-keyed and the client's direct media leave the edge on the direct uplink")
	keys := newChecker("the cloud side receives only SRTP under cloud-side keys, never the internal key, across an API re-key (bench verify on captures)")
	audio := newChecker("audio payloads arrive intact in all ten directions")
	defer func() {
		s.record(path.done())
		s.record(keys.done())
		s.record(audio.done())
	}()
	edge := s.topo.Edge
	// As an admin would: the gateway's own ports on each side for bench
	// verify, and everything on the uplink.
	caps := []struct {
		iface, filter, file string
		c                   *Capture
	}{
		{ifEdgeLAN, fmt.Sprintf("udp port %d", s.gwInternal.Port()), "lan0-gateway.pcap", nil},
		{ifEdgeWAN, fmt.Sprintf("udp port %d", s.gwCloud.Port()), "wan0-gateway.pcap", nil},
		{ifEdgeWAN, "udp", "wan0-all.pcap", nil},
	}
	stopCaps := func() error {
		var errs []error
		for i := range caps {
			if caps[i].c != nil {
				errs = append(errs, caps[i].c.Stop())
			}
		}
		return errors.Join(errs...)
	}

	// Quiet the senders so that the captures see whole exchanges.
	s.pause(true)
	if err := sleep(ctx, inFlight); err != nil {
		return err
	}
	for i := range caps {
		c, err := StartCapture(ctx, edge, caps[i].iface, caps[i].filter, filepath.Join(s.dir, caps[i].file))
		if err != nil {
			_ = stopCaps()
			s.pause(false)
			keys.fail(err)
			return nil
		}
		caps[i].c = c
	}
	c0, err0 := readCounters(ctx, edge, ifEdgeWAN, ifEdgeVPN)
	s.pause(false)
	t0 := time.Now()
	werr := sleep(ctx, s.opt.MediaWindow/2)
	var rk rekeyOutcome
	if werr == nil {
		// Half way: a new key for the cloud leg through the API, as
		// the signalling of a long call would ask for.
		rk = s.rekeyCloud(ctx)
		werr = sleep(ctx, s.opt.MediaWindow-time.Since(t0))
	}
	s.pause(true)
	t1 := time.Now()
	_ = sleep(ctx, inFlight)
	c1, err1 := readCounters(ctx, edge, ifEdgeWAN, ifEdgeVPN)
	errCap := stopCaps()
	s.pause(false)
	if werr != nil {
		return werr
	}
	if err := errors.Join(err0, err1); err != nil {
		path.fail(err)
	}
	end := t1.Add(inFlight)
	w := map[*Flow]Window{}
	for _, f := range s.flows() {
		w[f] = f.Window(t0, end)
	}

	// Path: interface counters and the source the cloud server saw.
	if c0 != nil && c1 != nil {
		wan, vpn := c1[ifEdgeWAN].Sub(c0[ifEdgeWAN]), c1[ifEdgeVPN].Sub(c0[ifEdgeVPN])
		var up, down, gotDown int
		for _, f := range s.flows() {
			if f.ToCloud {
				up += w[f].Sent
			} else {
				down += w[f].Sent
				gotDown += w[f].Received
			}
		}
		path.note("in %s: %d audio packets towards the cloud (relayed %d + %d over IPv6, re-keyed %d, direct %d + %d over IPv6), %d back",
			s.opt.MediaWindow, up, w[s.turnUp].Sent, w[s.turn6Up].Sent, w[s.gwUp].Sent, w[s.directUp].Sent, w[s.direct6Up].Sent, down)
		path.expect(up > 0 && wan.TxPackets >= uint64(up) && wan.RxPackets >= uint64(gotDown),
			"%s (direct uplink): tx +%d packets, rx +%d", ifEdgeWAN, wan.TxPackets, wan.RxPackets)
		path.expect(vpn.TxPackets <= 3 && vpn.RxPackets <= 3,
			"%s (VPN): tx +%d packets, rx +%d (at most 3 allowed: ARP, neighbour discovery)", ifEdgeVPN, vpn.TxPackets, vpn.RxPackets)
	}
	for _, f := range s.flows() {
		if !f.ToCloud {
			continue
		}
		src := w[f].Sources
		path.expect(len(src) == 1 && src[f.Uplink] > 0,
			"the cloud media server got %q from %s (uplink address %s, VPN address %s)", f.Name, sources(src), f.Uplink, vpnAddr(f.Uplink))
	}

	// Keys: bench's verifier on the gateway's packets of both captures,
	// then every datagram on the uplink against every key.
	s.noteRekey(keys, rk)
	if errCap != nil {
		keys.fail(errCap)
	} else {
		s.verifyCaptures(ctx, keys, caps[0].c.Path, caps[1].c.Path, caps[2].c.Path)
	}

	// Audio: every frame that arrived is the frame sent.
	for _, f := range s.flows() {
		sent, got := f.Totals()
		win := w[f]
		audio.expect(got > 0 && f.mismatch.Load() == 0 && f.foreign.Load() == 0 && f.authFail.Load() == 0 && win.Received == win.Sent,
			"%s (%.0f Hz tone, PCMU): %d frames sent, %d arrived byte-identical, %d altered, %d under a forbidden key, %d unauthenticated; in the window %d/%d",
			f.Name, f.Hz, sent, got, f.mismatch.Load(), f.foreign.Load(), f.authFail.Load(), win.Received, win.Sent)
	}
	return nil
}

// verifyCaptures runs `mediaedge bench verify` on the gateway's captures,
// then checks every UDP datagram of the uplink against every key of the
// scenario.
func (s *scenario) verifyCaptures(ctx context.Context, k *checker, lanGW, wanGW, wanAll string) {
	// Keys go through files (mode 0600), never the process list; a leg's
	// key epochs one per line, in the order they were used.
	gcloud := []bench.Key{s.keys.gCloud}
	if s.keys.gCloud2.Master != nil {
		gcloud = append(gcloud, s.keys.gCloud2)
	}
	keyFiles := map[string][]bench.Key{"kint": {s.keys.kInt}, "gint": {s.keys.gInt}, "gcloud": gcloud, "kcloud": {s.keys.kCloud}}
	for name, keys := range keyFiles {
		var b strings.Builder
		for _, key := range keys {
			b.WriteString(key.CryptoLine() + "\n")
		}
		if err := os.WriteFile(filepath.Join(s.dir, name), []byte(b.String()), 0o600); err != nil {
			k.fail(err)
			return
		}
	}
	res, status, err := s.benchVerify(ctx, lanGW, wanGW, "kint", "gint", "gcloud", "kcloud")
	if err != nil {
		k.fail(err)
		return
	}
	var matched []string
	for _, d := range res.Report.Directions {
		matched = append(matched, fmt.Sprintf("%s %d/%d matched, p99 added latency %.0f µs", d.Name, d.Received, d.Sent, d.Latency.P99))
	}
	k.expect(status == 0 && res.OK(), "mediaedge bench verify --internal-pcap %s --cloud-pcap %s --internal-in-file kint ...: exit status %d; %s; %d violations",
		filepath.Base(lanGW), filepath.Base(wanGW), status, strings.Join(matched, "; "), len(res.Violations))
	for i, v := range res.Violations {
		if i == 5 {
			k.note("... %d more", len(res.Violations)-5)
			break
		}
		k.note("violation: %s", v)
	}
	if s.keys.gCloud2.Master != nil {
		k.expect(len(res.ReKeys) > 0, "bench verify followed the cloud leg's re-key: %s", strings.Join(res.ReKeys, "; "))
	}
	// Control: the same captures, told that the cloud leg uses the
	// internal keys, must fail. A verifier that passes this would prove
	// nothing above.
	ctl, ctlStatus, err := s.benchVerify(ctx, lanGW, wanGW, "kint", "gint", "kint", "gint")
	if err != nil {
		k.fail(err)
		return
	}
	k.expect(ctlStatus == 2 && !ctl.OK(), "control: the same captures with the internal leg's keys given for the cloud leg: exit status %d, %d violations",
		ctlStatus, len(ctl.Violations))
	wan, wanSum, err := bench.ReadCaptureFile(wanAll)
	if err != nil {
		k.fail(err)
		return
	}
	// Every datagram on the uplink, whatever its port.
	cloudSide := []bench.Key{s.keys.gCloud, s.keys.gCloud2, s.keys.kCloud, s.keys.eUp, s.keys.eDown, s.keys.e6Up, s.keys.e6Down,
		s.keys.dUp, s.keys.dDown, s.keys.d6Up, s.keys.d6Down}
	internal := []bench.Key{s.keys.kInt, s.keys.gInt}
	var ok, leaked, none int
	for _, d := range wan {
		switch {
		case opensWith(d.Payload, cloudSide):
			ok++
		case opensWith(d.Payload, internal):
			leaked++
		default:
			none++
		}
	}
	k.expect(len(wan) > 0 && leaked == 0 && none == 0,
		"every UDP datagram on %s (%s, %d of %d records): %d authenticate with a cloud-side or end-to-end key, %d with an internal-leg key, %d with none (plaintext or foreign)",
		ifEdgeWAN, filepath.Base(wanAll), len(wan), wanSum.Records, ok, leaked, none)
}

// rekeyOutcome is what the API answered to the re-key.
type rekeyOutcome struct {
	at       time.Time
	epoch    uint32
	activeAt time.Time
	err      error
}

// rekeyCloud asks the gateway for a new key on the cloud leg and announces
// it to the cloud media server, as signalling would.
func (s *scenario) rekeyCloud(ctx context.Context) rekeyOutcome {
	var resp struct {
		Crypto   string    `json:"crypto"`
		KeyEpoch uint32    `json:"key_epoch"`
		ActiveAt time.Time `json:"active_at"`
	}
	out := rekeyOutcome{at: time.Now()}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if out.err = s.edge.Control.Do(rctx, "POST", "/v1/sessions/"+s.sessionID+"/rekey", map[string]string{"leg": "cloud"}, &resp); out.err != nil {
		return out
	}
	key, err := bench.ParseCryptoLine(resp.Crypto)
	if err != nil {
		out.err = err
		return out
	}
	s.keys.gCloud2 = key
	s.gwCloudPeer.AnnounceKey(key)
	out.epoch, out.activeAt = resp.KeyEpoch, resp.ActiveAt
	return out
}

// noteRekey adds the re-key's evidence to k.
func (s *scenario) noteRekey(k *checker, rk rekeyOutcome) {
	if rk.at.IsZero() {
		return
	}
	if rk.err != nil {
		k.fail(fmt.Errorf("POST /v1/sessions/%s/rekey: %w", s.sessionID, rk.err))
		return
	}
	idx, switched := s.gwCloudPeer.SwitchedAt()
	k.expect(rk.epoch == 2 && switched && !sameKey(s.keys.gCloud2, s.keys.gCloud) && !sameKey(s.keys.gCloud2, s.keys.kInt),
		"POST /v1/sessions/%s/rekey {\"leg\":\"cloud\"} half way: key epoch %d, active %s later; the cloud server decrypted with it from frame %d (a new key, neither the old one nor an internal one)",
		s.sessionID, rk.epoch, rk.activeAt.Sub(rk.at).Round(time.Millisecond), idx)
}

// benchVerify runs `mediaedge bench verify --json` with the key files
// named (K_int, G_int, G_cloud, K_cloud in the work directory). It returns
// the decoded result, the command's exit status (2 when it found
// violations) and an error when it could not run at all.
func (s *scenario) benchVerify(ctx context.Context, lanGW, wanGW, intIn, intOut, cloudOut, cloudIn string) (*bench.VerifyResult, int, error) {
	args := []string{"bench", "verify", "--json", "--internal-pcap", lanGW, "--cloud-pcap", wanGW,
		"--internal-in-file", filepath.Join(s.dir, intIn), "--internal-out-file", filepath.Join(s.dir, intOut),
		"--cloud-out-file", filepath.Join(s.dir, cloudOut), "--cloud-in-file", filepath.Join(s.dir, cloudIn)}
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(vctx, s.opt.Bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	status := 0
	var ee *exec.ExitError
	if errors.As(runErr, &ee) {
		status = ee.ExitCode()
	}
	var res bench.VerifyResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || res.Report == nil {
		return nil, status, fmt.Errorf("e2e: mediaedge bench verify: %v (decoding its output: %v): %s", runErr, err, strings.TrimSpace(stderr.String()))
	}
	return &res, status, nil
}

// stepOtherTraffic shows that what is not media keeps using the VPN: a
// cloud host outside the media prefixes, and a corporate host.
func (s *scenario) stepOtherTraffic(ctx context.Context) error {
	k := newChecker("other traffic to the internet (and to the corporate network) still goes through the VPN")
	defer func() { s.record(k.done()) }()
	const n = 20
	const targets = 4
	c0, err := readCounters(ctx, s.topo.Edge, ifEdgeVPN)
	if err != nil {
		k.fail(err)
		return nil
	}
	for _, t := range []struct {
		what string
		dst  netip.Addr
		want netip.Addr
		via  string
	}{
		{"cloud host", CloudWebAddr, ConcentratorPublicAddr, "the concentrator's public address: through the VPN"},
		{"cloud host", CloudWebAddr6, ConcentratorPublicAddr6, "the concentrator's public address: through the VPN"},
		{"corporate host", CorpHostAddr, ClientAddr, "the client's own address, through the tunnel"},
		{"corporate host", CorpHostAddr6, ClientAddr6, "the client's own address, through the tunnel"},
	} {
		ap := netip.AddrPortFrom(t.dst, EchoPort)
		got, err := Probe(s.topo.Client, ap, n)
		if err != nil {
			k.fail(err)
			continue
		}
		src := s.echoes[ap].Sources()
		dev, _ := routeVia(ctx, s.topo.Edge, t.dst, EchoPort)
		k.expect(got == n && src[t.want] == n && len(src) == 1,
			"%s %s: %d/%d echoed; it saw them from %s (%s); ip route get: dev %s", t.what, t.dst, got, n, sources(src), t.via, dev)
	}
	c1, err := readCounters(ctx, s.topo.Edge, ifEdgeVPN)
	if err != nil {
		k.fail(err)
		return nil
	}
	vpn := c1[ifEdgeVPN].Sub(c0[ifEdgeVPN])
	k.expect(vpn.TxPackets >= targets*n && vpn.RxPackets >= targets*n, "%s: tx +%d packets, rx +%d during the %d probes", ifEdgeVPN, vpn.TxPackets, vpn.RxPackets, targets*n)
	return nil
}

// stepMetrics scrapes the metrics endpoint and holds its counters against
// what the peers sent and received around the scrape.
func (s *scenario) stepMetrics(ctx context.Context) error {
	k := newChecker("the metrics endpoint reports the traffic")
	defer func() { s.record(k.done()) }()
	type tot struct{ sent, got int }
	before := map[*Flow]tot{}
	for _, f := range s.flows() {
		sent, got := f.Totals()
		before[f] = tot{sent, got}
	}
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), MetricsPort).String()
	m, err := Scrape(ctx, s.topo.Edge.DialContext, addr)
	if err != nil {
		k.fail(err)
		return nil
	}
	after := map[*Flow]tot{}
	for _, f := range s.flows() {
		sent, got := f.Totals()
		after[f] = tot{sent, got}
	}
	k.note("GET http://%s/metrics inside the edge: %d samples", addr, len(m))
	counter := func(fs []*Flow, name string, labels ...string) {
		v, found := m.Sum(name, labels...)
		var lo, hi int
		for _, f := range fs {
			lo += before[f].got
			hi += after[f].sent
		}
		k.expect(found && v >= float64(lo) && v <= float64(hi),
			"%s%s = %.0f (the receivers had %d intact before the scrape, the senders %d sent after it)", name, labelText(labels), v, lo, hi)
	}
	turnUp, turnDown := []*Flow{s.turnUp, s.turn6Up}, []*Flow{s.turnDown, s.turn6Down}
	gwUp, gwDown := []*Flow{s.gwUp}, []*Flow{s.gwDown}
	counter(turnUp, "mediaedge_relay_packets_total", "direction=to_peer")
	counter(turnDown, "mediaedge_relay_packets_total", "direction=to_client")
	counter(gwUp, "mediaedge_gateway_packets_total", "leg=internal", "direction=in")
	counter(gwUp, "mediaedge_gateway_packets_total", "leg=cloud", "direction=out")
	counter(gwDown, "mediaedge_gateway_packets_total", "leg=cloud", "direction=in")
	counter(gwDown, "mediaedge_gateway_packets_total", "leg=internal", "direction=out")
	gauge := func(name string, want func(float64) bool, what string, labels ...string) {
		v, found := m.Sum(name, labels...)
		k.expect(found && want(v), "%s%s = %.0f (%s)", name, labelText(labels), v, what)
	}
	gauge("mediaedge_relay_allocations_active", func(v float64) bool { return v == 2 }, "the client's IPv4 and IPv6 allocations")
	gauge("mediaedge_gateway_sessions", func(v float64) bool { return v == 1 }, "the call")
	gauge("mediaedge_policy_uplink_up", func(v float64) bool { return v == 1 }, "wan0 carries IPv4 media", "family=ipv4")
	gauge("mediaedge_policy_uplink_up", func(v float64) bool { return v == 1 }, "wan0 carries IPv6 media", "family=ipv6")
	gauge("mediaedge_policy_rules_owned", func(v float64) bool { return v > 0 }, "rules installed")
	return nil
}

// waitRecovered waits until every flow has an intact arrival after t, the
// cloud-bound ones from the uplink address. It returns when the last one
// came back, or the flows that did not, each with the sources it had.
func (s *scenario) waitRecovered(ctx context.Context, t time.Time, timeout time.Duration) (time.Time, []string) {
	var last time.Time
	var missing []string
	waitFor(ctx, timeout, func() bool {
		last, missing = time.Time{}, nil
		for _, f := range s.flows() {
			var first time.Time
			if f.ToCloud {
				if a := f.ArrivalsFrom(f.Uplink, t); len(a) > 0 {
					first = a[0]
				}
			} else {
				first = f.Window(t, time.Now()).FirstArrival
			}
			if first.IsZero() {
				missing = append(missing, fmt.Sprintf("%s (arrived since: from %s)", f.Name, sources(f.Window(t, time.Now()).Sources)))
				continue
			}
			if first.After(last) {
				last = first
			}
		}
		return len(missing) == 0
	})
	return last, missing
}

// labelText formats label matchers as PromQL does: {a="b",c="d"}.
func labelText(kv []string) string {
	if len(kv) == 0 {
		return ""
	}
	parts := make([]string, len(kv))
	for i, p := range kv {
		k, v, _ := strings.Cut(p, "=")
		parts[i] = fmt.Sprintf("%s=%q", k, v)
	}
	return "{" + strings.Join(parts, ",") + "}"
}
