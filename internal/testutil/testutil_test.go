package testutil

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSyncBufferConcurrentWrites(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				fmt.Fprintf(&b, "%d\n", i)
			}
		}()
	}
	wg.Wait()
	if n := strings.Count(b.String(), "\n"); n != 800 {
		t.Fatalf("%d lines, want 800", n)
	}
}

func TestPoll(t *testing.T) {
	n := 0
	took, ok := Poll(time.Second, func() bool { n++; return n == 3 })
	if !ok || n != 3 || took >= time.Second {
		t.Fatalf("Poll: ok %v after %d calls and %v", ok, n, took)
	}
	took, ok = Poll(20*time.Millisecond, func() bool { return false })
	if ok || took < 20*time.Millisecond {
		t.Fatalf("Poll of a false condition: ok %v after %v", ok, took)
	}
}

// fatalRecorder records Fatalf instead of ending the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
}

func TestWaitForFailsNamingWhat(t *testing.T) {
	r := &fatalRecorder{TB: t}
	WaitFor(r, "the impossible", 10*time.Millisecond, func() bool { return false })
	if !strings.Contains(r.msg, "the impossible") {
		t.Fatalf("WaitFor on a false condition reported %q", r.msg)
	}
	r.msg = ""
	WaitFor(r, "truth", time.Second, func() bool { return true })
	if r.msg != "" {
		t.Fatalf("WaitFor on a true condition failed: %q", r.msg)
	}
}

func TestFreePortIsBindable(t *testing.T) {
	p := FreePort(t)
	l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		t.Fatalf("TCP port %d: %v", p, err)
	}
	l.Close()
	u, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		t.Fatalf("UDP port %d: %v", p, err)
	}
	u.Close()
}

func TestListenUDP(t *testing.T) {
	c := ListenUDP(t)
	if a := AddrOf(c); !a.Addr().IsLoopback() || a.Port() == 0 {
		t.Fatalf("bound to %v", a)
	}
}
