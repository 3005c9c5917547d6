package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mediaedge/mediaedge/internal/control"
)

const (
	dashboardFile = "../../contrib/grafana/mediaedge.json"
	alertsFile    = "../../contrib/prometheus/alerts.yml"
	alertsTest    = "../../contrib/prometheus/alerts_test.yml"
)

// TestAlertRulesPromtool checks the alerting rules with Prometheus's own
// tool, and runs their unit tests.
func TestAlertRulesPromtool(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	for _, args := range [][]string{{"check", "rules", alertsFile}, {"test", "rules", alertsTest}} {
		out, err := exec.Command("promtool", args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// metricNameRE finds the daemon's metric names in PromQL.
var metricNameRE = regexp.MustCompile(`\b(?:mediaedge|process|go)_[a-z0-9_]+\b`)

// queriedMetrics returns the metric names the dashboard and the alerting
// rules query.
func queriedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range metricNameRE.FindAllString(tg.Expr, -1) {
				used[m] = append(used[m], "dashboard panel "+p.Title)
			}
		}
	}
	for _, v := range dash.Templating.List {
		for _, m := range metricNameRE.FindAllString(v.Definition, -1) {
			used[m] = append(used[m], "dashboard variable")
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	data, err = os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, m := range metricNameRE.FindAllString(r.Expr, -1) {
				used[m] = append(used[m], "alert "+r.Alert)
			}
		}
	}
	if len(used) < 20 {
		t.Fatalf("found only %d metric names in the dashboard and rules: is the parsing right?", len(used))
	}
	return used
}

// scrapeNames returns the metric names on a /metrics page.
func scrapeNames(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// TestDashboardAndAlertsUseExportedMetrics starts the daemon with every
// component (policy in plan mode), makes one allocation and one gateway
// session so that lazily created series exist, and checks that every
// metric the dashboard and the alerting rules query is on /metrics.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	used := queriedMetrics(t)
	d := startOpsDaemonPolicy(t, "  enabled: true\n  mode: plan\n")
	s, err := allocate(t, d.turn, "alice", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	peer := newCountingPeer(t)
	sendPaced(t, s, peer.conn.LocalAddr(), 1)
	key := func() string {
		b := make([]byte, 30)
		_, _ = rand.Read(b)
		return "1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.StdEncoding.EncodeToString(b)
	}
	// A peer the policy refuses (documentation range): peers_denied.
	_, _ = s.rc.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9})
	cl := control.NewClient(d.sock, "")
	defer cl.Close()
	ctx := context.Background()
	newSession := func() string {
		var info struct {
			ID string `json:"id"`
		}
		if err := cl.Do(ctx, "POST", "/v1/sessions", map[string]any{
			"internal": map[string]any{"remote": "127.0.0.1:9", "rtcp_mux": true, "crypto": key()},
			"cloud":    map[string]any{"remote": "127.0.0.1:9", "rtcp_mux": true, "crypto": key()},
		}, &info); err != nil {
			t.Fatal(err)
		}
		return info.ID
	}
	// Series that appear with their first event: a re-key, an ended
	// session, a refused request.
	id := newSession()
	newSession()
	if err := cl.Do(ctx, "POST", "/v1/sessions/"+id+"/rekey", map[string]any{"leg": "cloud"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := cl.Do(ctx, "DELETE", "/v1/sessions/"+id, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := cl.Do(ctx, "POST", "/v1/sessions", map[string]any{"internal": map[string]any{}, "cloud": map[string]any{}}, nil); err == nil {
		t.Fatal("an empty session request was accepted")
	}
	var missing []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		names := scrapeNames(t, "http://"+d.metrics+"/metrics")
		missing = missing[:0]
		for m := range used {
			if !names[m] {
				missing = append(missing, m)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	slices.Sort(missing)
	for _, m := range missing {
		t.Errorf("%s (used by %s) is not exported", m, strings.Join(used[m], ", "))
	}
}
