package evloop

import (
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/internal/sockopt"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testHandler reads datagrams one by one and reports what the loop did
// on channels; its hooks run on the loop's goroutine.
type testHandler struct {
	l      *Loop
	fds    map[int32]int
	got    chan string // datagrams read
	woken  func()
	rounds atomic.Int64
	flush  atomic.Int64
}

func (h *testHandler) Round(int64) { h.rounds.Add(1) }

func (h *testHandler) Ready(tag int32) (int, bool) {
	buf := make([]byte, 64)
	n := 0
	for {
		k, _, err := unix.Recvfrom(h.fds[tag], buf, unix.MSG_DONTWAIT)
		if err != nil {
			return n, false
		}
		n++
		h.got <- string(buf[:k])
	}
}

func (h *testHandler) Woken() {
	if h.woken != nil {
		h.woken()
	}
}

func (h *testHandler) Flush() { h.flush.Add(1) }

// socket opens a UDP socket on loopback and returns it with a sender.
func socket(t *testing.T) (int, *net.UDPConn) {
	t.Helper()
	fd, err := udpbatch.Open(netip.MustParseAddrPort("127.0.0.1:0"), sockopt.Options{}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	la, err := udpbatch.LocalAddr(fd)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(la))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return fd, c
}

func newLoop(t *testing.T, h *testHandler) *Loop {
	t.Helper()
	l, err := New(Config{Name: "test", MinBatch: 8})
	if err != nil {
		t.Fatal(err)
	}
	h.l = l
	return l
}

// runLoop runs l with h until the test ends (Close) and returns Run's
// result channel.
func runLoop(t *testing.T, l *Loop, h Handler) chan error {
	done := make(chan error, 1)
	go func() { done <- l.Run(h) }()
	t.Cleanup(func() {
		l.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not end after Close")
		}
	})
	return done
}

func recvWithin(t *testing.T, ch chan string, d time.Duration) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(d):
		t.Fatalf("nothing within %v", d)
		return ""
	}
}

// TestLoopServes: datagrams on two sockets reach Ready under their tags,
// each round ends with Flush, and Add refuses the loop's own tag.
func TestLoopServes(t *testing.T) {
	h := &testHandler{got: make(chan string, 100), fds: map[int32]int{}}
	l := newLoop(t, h)
	a, ca := socket(t)
	b, cb := socket(t)
	h.fds[-5], h.fds[9] = a, b
	if err := l.Add(a, -5); err != nil {
		t.Fatal(err)
	}
	if err := l.Add(b, 9); err != nil {
		t.Fatal(err)
	}
	if err := l.Add(b, wakeTag); err == nil {
		t.Error("Add with the wake tag succeeded")
	}
	runLoop(t, l, h)
	for i := 0; i < 3; i++ {
		ca.Write([]byte("a"))
		cb.Write([]byte("b"))
	}
	seen := map[string]int{}
	for i := 0; i < 6; i++ {
		seen[recvWithin(t, h.got, 5*time.Second)]++
	}
	if seen["a"] != 3 || seen["b"] != 3 {
		t.Errorf("read %v, want 3 a and 3 b", seen)
	}
	// Remove: b's datagrams stay in its socket.
	l.Remove(b)
	l.Remove(b) // not in the set: no error, no harm
	cb.Write([]byte("b"))
	ca.Write([]byte("a"))
	if got := recvWithin(t, h.got, 5*time.Second); got != "a" {
		t.Errorf("read %q after Remove, want a", got)
	}
	select {
	case got := <-h.got:
		t.Errorf("read %q from a removed socket", got)
	case <-time.After(100 * time.Millisecond):
	}
	if h.flush.Load() == 0 {
		t.Error("no round ended with Flush")
	}
}

// TestLoopTimers: an idle loop wakes for its timers (the netpoller
// deadline), in deadline order, on the loop's goroutine; a timer scheduled
// from a command before the armed deadline re-arms it; a cancelled timer
// never fires.
func TestLoopTimers(t *testing.T) {
	h := &testHandler{got: make(chan string, 100), fds: map[int32]int{}}
	l := newLoop(t, h)
	var far, t1, t2, never Timer
	far.Init(func(int64) { h.got <- "far" })
	t1.Init(func(int64) { h.got <- "t1" })
	t2.Init(func(int64) { h.got <- "t2" })
	never.Init(func(int64) { h.got <- "never" })
	h.woken = func() {
		now := l.Now()
		l.Schedule(&far, now+int64(time.Hour))
		l.Schedule(&never, now+int64(time.Hour)+1)
		h.woken = func() {
			// Both earlier than the deadline armed for the idle loop.
			now := l.Now()
			l.Cancel(&never)
			l.Schedule(&t2, now+int64(60*time.Millisecond))
			l.Schedule(&t1, now+int64(30*time.Millisecond))
			l.Schedule(&t1, now+int64(10*time.Millisecond)) // moved
		}
	}
	runLoop(t, l, h)
	l.Wake()
	time.Sleep(20 * time.Millisecond) // parked with the one-hour deadline, most likely
	l.Wake()
	if got := recvWithin(t, h.got, 5*time.Second); got != "t1" {
		t.Fatalf("first timer %q, want t1", got)
	}
	if got := recvWithin(t, h.got, 5*time.Second); got != "t2" {
		t.Fatalf("second timer %q, want t2", got)
	}
	select {
	case got := <-h.got:
		t.Errorf("then %q fired", got)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestLoopStopAndClose: Stop from a handler ends Run after the round
// with nil; Close from another goroutine ends a parked Run with nil; Wake
// and Remove after Close do nothing, Add fails with ErrClosed.
func TestLoopStopAndClose(t *testing.T) {
	h := &testHandler{got: make(chan string, 1), fds: map[int32]int{}}
	l := newLoop(t, h)
	h.woken = func() { h.l.Stop() }
	done := make(chan error, 1)
	go func() { done <- l.Run(h) }()
	l.Wake()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after Stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end after Stop")
	}
	l.Close()
	l.Close()
	fd, _ := socket(t)
	if err := l.Add(fd, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v, want ErrClosed", err)
	}
	l.Remove(fd)
	l.Wake()

	h2 := &testHandler{got: make(chan string, 1), fds: map[int32]int{}}
	l2 := newLoop(t, h2)
	done = make(chan error, 1)
	go func() { done <- l2.Run(h2) }()
	time.Sleep(20 * time.Millisecond) // parked in the netpoller, most likely
	l2.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end after Close")
	}
}
