package relay

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestPionDebugLinesRateLimited logs 10,000 pion debug lines (as a junk
// flood at debug level makes pion do, one per datagram) and checks that at
// most debugLinesPerSecond a second get through, the first after a pause
// saying how many were suppressed.
func TestPionDebugLinesRateLimited(t *testing.T) {
	var buf testutil.SyncBuffer
	f := newPionLogs(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l := f.NewLogger("turn")
	t0 := time.Now()
	for i := range 10000 {
		l.Debugf("Failed to handle datagram %d", i)
	}
	periods := int(time.Since(t0)/time.Second) + 1
	if n := strings.Count(buf.String(), "\n"); n > debugLinesPerSecond*periods || n == 0 {
		t.Fatalf("%d lines for 10000 debug calls in %d period(s), want 1 to %d", n, periods, debugLinesPerSecond*periods)
	}
	time.Sleep(time.Second + 100*time.Millisecond)
	l.Debug("after the pause")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "after the pause") || !strings.Contains(last, "suppressed=") {
		t.Errorf("last line = %q, want the suppressed count", last)
	}
}

// TestQuotaRefusalLogRateLimited triggers 1,000 refusals (486) and checks
// that the log lines are bounded like those of authentication failures
// while every refusal is counted.
func TestQuotaRefusalLogRateLimited(t *testing.T) {
	var buf testutil.SyncBuffer
	s := fuzzServer(t)
	s.log = slog.New(slog.NewTextHandler(&buf, nil))
	lim := *s.limits.Load()
	lim.MaxAllocations = 1
	s.limits.Store(&lim)
	s.pending = 1 // the relay is full
	src := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4000}
	t0 := time.Now()
	for range 1000 {
		if s.quota("alice", testRealm, src) {
			t.Fatal("allocation admitted over the cap")
		}
	}
	periods := int(time.Since(t0)/time.Second) + 1
	if n := strings.Count(buf.String(), "allocation refused (486)"); n == 0 || n > 20*periods {
		t.Errorf("%d log lines for 1000 refusals, want 1 to %d", n, 20*periods)
	}
}
