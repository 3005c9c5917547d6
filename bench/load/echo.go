package load

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/mediaedge/mediaedge/internal/sockopt"
	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// echoPeer sends every datagram back to where it came from: the far end
// of `bench turn`. It starts in startEchoPeer and stops in Close.
type echoPeer struct {
	uc *net.UDPConn
	wg sync.WaitGroup
}

// startEchoPeer binds addr and starts echoing.
func startEchoPeer(addr string) (*echoPeer, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, optionError("echo peer address %q: %v", addr, err)
	}
	uc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("load: echo peer: %w", err)
	}
	if rc, err := uc.SyscallConn(); err == nil {
		_ = sockopt.Options{RecvBuffer: 4 << 20, SendBuffer: 4 << 20}.Control("udp", "", rc)
	}
	e := &echoPeer{uc: uc}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.run()
	}()
	return e, nil
}

// Addr is the peer's address.
func (e *echoPeer) Addr() netip.AddrPort {
	a := e.uc.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// Close stops the echo and waits for it. Idempotent.
func (e *echoPeer) Close() {
	e.uc.Close()
	e.wg.Wait()
}

func (e *echoPeer) run() {
	bc := udpbatch.New(e.uc, batchSize)
	msgs := make([]udpbatch.Message, batchSize)
	for i := range msgs {
		msgs[i].Buf = make([]byte, 65536)
	}
	for {
		n, err := bc.ReadBatch(msgs)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		out := msgs[:n]
		for len(out) > 0 {
			w, err := bc.WriteBatch(out)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				w++ // skip the datagram the kernel refused
			}
			out = out[min(w, len(out)):]
		}
	}
}
