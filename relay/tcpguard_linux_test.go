package relay

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/mediaedge/mediaedge/internal/testutil"

	"github.com/mediaedge/mediaedge/internal/config"
)

func TestTemporaryAccept(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"emfile", &net.OpError{Op: "accept", Err: &wrapErrno{syscall.EMFILE}}, true},
		{"enfile", syscall.ENFILE, true},
		{"enobufs", fmt.Errorf("x: %w", syscall.ENOBUFS), true},
		{"econnaborted", syscall.ECONNABORTED, true},
		{"timeout", &net.OpError{Op: "accept", Err: timeoutErr{}}, true},
		{"closed", net.ErrClosed, false},
		{"einval", syscall.EINVAL, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := temporaryAccept(tc.err); got != tc.want {
				t.Errorf("temporaryAccept(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
	d := time.Duration(0)
	for range 20 {
		d = acceptBackoff(d)
	}
	if d != acceptBackoffMax {
		t.Errorf("backoff after 20 errors = %v, want the cap %v", d, acceptBackoffMax)
	}
}

type wrapErrno struct{ e syscall.Errno }

func (w *wrapErrno) Error() string { return "wrapped: " + w.e.Error() }
func (w *wrapErrno) Unwrap() error { return w.e }

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestTCPListenerDeathFailsHealth closes a client listener's socket under
// pion's accept loop (a listener that really died, not a temporary error)
// and checks that the relay reports it through Health and Status and logs
// it at error.
func TestTCPListenerDeathFailsHealth(t *testing.T) {
	r := startRelay(t, baseConfig(t))
	if err := r.Health(); err != nil {
		t.Fatalf("healthy relay: %v", err)
	}
	r.tcpLns[0].ln.Close()
	testutil.WaitFor(t, "the relay to report the dead listener", 10*time.Second, func() bool { return r.Health() != nil })
	if st := r.Status(); st.State != "degraded" || !strings.Contains(st.Detail, "stopped accepting") {
		t.Errorf("status = %+v", st.Status)
	}
	if !strings.Contains(r.logs.String(), `level=ERROR msg="TCP listener stopped accepting connections"`) {
		t.Errorf("no error logged:\n%s", r.logs.String())
	}
}

// closedSoon reports whether the server closes c within d.
func closedSoon(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 512)
	for {
		// Answers the server sent before closing come first.
		if _, err := c.Read(buf); err != nil {
			return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
		}
	}
}

func TestTCPConnectionCaps(t *testing.T) {
	for _, tc := range []struct {
		name          string
		total, perSrc int
		reason        string
		open          int
	}{
		{"per source", 0, 3, tcpRefusedSource, 3},
		{"total", 2, 0, tcpRefusedTotal, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t)
			cfg.Limits.MaxTCPConnections = tc.total
			cfg.Limits.MaxTCPConnectionsPerSource = tc.perSrc
			cfg.Limits.TCPAuthTimeout = config.Duration(time.Minute)
			r := startRelay(t, cfg)
			var conns []net.Conn
			for range tc.open {
				c, err := net.Dial("tcp", r.tcp.String())
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
			}
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			testutil.WaitFor(t, "the connections to be accepted", 10*time.Second, func() bool { return r.tcpConns.open() == tc.open })
			over, err := net.Dial("tcp", r.tcp.String())
			if err != nil {
				t.Fatal(err)
			}
			defer over.Close()
			if !closedSoon(over, 10*time.Second) {
				t.Fatal("the connection over the cap stayed open")
			}
			if got := r.metric(t, "mediaedge_relay_tcp_connections_refused_total", "reason", tc.reason); got != 1 {
				t.Errorf("refused{%s} = %v, want 1", tc.reason, got)
			}
			for _, c := range conns {
				if closedSoon(c, 50*time.Millisecond) {
					t.Error("a connection under the cap was closed")
				}
			}
			// Closing one makes room again.
			conns[0].Close()
			testutil.WaitFor(t, "the closed connection to be released", 10*time.Second, func() bool { return r.tcpConns.open() == tc.open-1 })
			c, _ := tcpClient(t, r.tcp, testUser, testPass)
			rc, err := c.Allocate()
			if err != nil {
				t.Fatalf("allocate after a connection closed: %v", err)
			}
			rc.Close()
		})
	}
}

// TestTCPUnauthenticatedClosed checks that a connection on which no request
// authenticates is closed after limits.tcp_auth_timeout and counted, while
// one that allocated stays open.
func TestTCPUnauthenticatedClosed(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Limits.TCPAuthTimeout = config.Duration(time.Second)
	r := startRelay(t, cfg)

	c, _ := tcpClient(t, r.tcp, testUser, testPass)
	relayConn, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relayConn.Close()

	idle, err := net.Dial("tcp", r.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	// A Binding is answered but does not authenticate.
	m := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if _, err := idle.Write(m.Raw); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if !closedSoon(idle, 10*time.Second) {
		t.Fatal("the unauthenticated connection stayed open")
	}
	if el := time.Since(t0); el < 500*time.Millisecond {
		t.Errorf("closed after %v, before the 1s deadline", el)
	}
	testutil.WaitFor(t, "the counter", 5*time.Second, func() bool {
		return r.metric(t, "mediaedge_relay_tcp_unauthenticated_closed_total") == 1
	})
	// The authenticated client outlived the deadline.
	time.Sleep(time.Second)
	peer := echoPeer(t, "udp4", "127.0.0.1:0")
	roundTrip(t, relayConn, peer.LocalAddr(), []byte("still here"))
}
