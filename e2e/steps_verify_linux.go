package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mediaedge/mediaedge/bench/capture"
	"github.com/mediaedge/mediaedge/bench/srtpcheck"
)

// verifyCaptures runs `mediaedge bench verify` on the gateway's captures,
// then checks every UDP datagram of the uplink against every key of the
// scenario.
func (s *scenario) verifyCaptures(ctx context.Context, k *checker, lanGW, wanGW, wanAll string) {
	// Keys go through files (mode 0600), never the process list; a leg's
	// key epochs one per line, in the order they were used.
	gcloud := []srtpcheck.Key{s.keys.gCloud}
	if s.keys.gCloud2.Master != nil {
		gcloud = append(gcloud, s.keys.gCloud2)
	}
	keyFiles := map[string][]srtpcheck.Key{"kint": {s.keys.kInt}, "gint": {s.keys.gInt}, "gcloud": gcloud, "kcloud": {s.keys.kCloud}}
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
	wan, wanSum, err := capture.ReadCaptureFile(wanAll)
	if err != nil {
		k.fail(err)
		return
	}
	// Every datagram on the uplink, whatever its port.
	cloudSide := []srtpcheck.Key{s.keys.gCloud, s.keys.gCloud2, s.keys.kCloud, s.keys.eUp, s.keys.eDown, s.keys.e6Up, s.keys.e6Down,
		s.keys.dUp, s.keys.dDown, s.keys.d6Up, s.keys.d6Down}
	internal := []srtpcheck.Key{s.keys.kInt, s.keys.gInt}
	// A record may be a UDP GSO message of several datagrams (the
	// gateway batches packets that queue for one destination; veth
	// carries the message unsegmented): each of them must authenticate.
	var ok, leaked, none, gso int
	for _, d := range wan {
		switch {
		case srtpcheck.OpensWithAny(d.Payload, cloudSide):
			ok++
		case srtpcheck.OpensWithAny(d.Payload, internal):
			leaked++
		default:
			if segs := srtpcheck.SplitGSO(d.Payload, cloudSide); segs != nil {
				ok += len(segs)
				gso++
			} else if segs := srtpcheck.SplitGSO(d.Payload, cloudSide, internal); segs != nil {
				leaked += len(segs)
			} else {
				none++
			}
		}
	}
	k.expect(len(wan) > 0 && leaked == 0 && none == 0,
		"every UDP datagram on %s (%s, %d of %d records, %d of them UDP GSO messages): %d authenticate with a cloud-side or end-to-end key, %d with an internal-leg key, %d with none (plaintext or foreign)",
		ifEdgeWAN, filepath.Base(wanAll), len(wan), wanSum.Records, gso, ok, leaked, none)
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
	key, err := srtpcheck.ParseCryptoLine(resp.Crypto)
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
func (s *scenario) benchVerify(ctx context.Context, lanGW, wanGW, intIn, intOut, cloudOut, cloudIn string) (*srtpcheck.VerifyResult, int, error) {
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
	var res srtpcheck.VerifyResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || res.Report == nil {
		return nil, status, fmt.Errorf("e2e: mediaedge bench verify: %w (decoding its output: %w): %s", runErr, err, strings.TrimSpace(stderr.String()))
	}
	return &res, status, nil
}
