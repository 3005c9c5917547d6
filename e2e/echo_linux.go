package e2e

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Echo is a UDP echo service that remembers which source addresses it
// served: the way an internet host sees whether traffic came direct (the
// edge's uplink address) or through the VPN (the concentrator's). Close
// ends it.
type Echo struct {
	conn *net.UDPConn
	wg   sync.WaitGroup

	mu      sync.Mutex
	sources map[netip.Addr]int
}

// StartEcho serves UDP echo on addr inside ns.
func StartEcho(ns *Netns, addr string) (*Echo, error) {
	c, err := ns.ListenUDP(addr)
	if err != nil {
		return nil, err
	}
	e := &Echo{conn: c, sources: map[netip.Addr]int{}}
	e.wg.Add(1)
	go e.serve()
	return e, nil
}

func (e *Echo) serve() {
	defer e.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := e.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		e.mu.Lock()
		e.sources[from.Addr().Unmap()]++
		e.mu.Unlock()
		_, _ = e.conn.WriteToUDPAddrPort(buf[:n], from)
	}
}

// Sources returns and resets the count of datagrams by source address.
func (e *Echo) Sources() map[netip.Addr]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.sources
	e.sources = map[netip.Addr]int{}
	return s
}

// Close stops the service and waits for it.
func (e *Echo) Close() {
	_ = e.conn.Close()
	e.wg.Wait()
}

// probeTimeout is how long a probe waits for the last echo.
const probeTimeout = 2 * time.Second

// Probe sends n datagrams from a new socket in ns to dst and counts the
// echoes that come back within probeTimeout.
func Probe(ns *Netns, dst netip.AddrPort, n int) (int, error) {
	c, err := ns.ListenUDP(net.JoinHostPort(clientAddr(dst.Addr()).String(), "0"))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	for i := 0; i < n; i++ {
		if _, err := c.WriteToUDPAddrPort(fmt.Appendf(nil, "probe %d", i), dst); err != nil {
			return 0, fmt.Errorf("e2e: probing %s: %w", dst, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	got := map[string]bool{}
	buf := make([]byte, 64)
	_ = c.SetReadDeadline(time.Now().Add(probeTimeout))
	for len(got) < n {
		m, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			break // deadline: what came back is the answer
		}
		got[string(buf[:m])] = true
	}
	return len(got), nil
}
