//go:build !linux

package gateway

import (
	"net/netip"

	"github.com/mediaedge/mediaedge/internal/sockopt"
	"github.com/mediaedge/mediaedge/internal/steer"
)

// workerSys has no implementation outside Linux: the data path needs
// epoll and recvmmsg. Start fails with ErrUnsupported.
type workerSys struct {
	socks       []*sock
	clock       func() int64
	failFn      func(i int)
	steerFailed func(error)
}

func (s *workerSys) open(batch int) error                       { return ErrUnsupported }
func (s *workerSys) wake()                                      {}
func (s *workerSys) register(so *sock) error                    { return ErrUnsupported }
func (s *workerSys) unregister(so *sock)                        {}
func (s *workerSys) close()                                     {}
func (w *worker) run()                                          { close(w.done) }
func (s *workerSys) openSteering(*steer.Steerer, *Config) error { return ErrUnsupported }
func (s *workerSys) closeSteering()                             {}
func (w *worker) sendFailedAt(int)                              {}
func (w *worker) applySockOpts(legID, *LegConfig, bool) int     { return 0 }

func openSock(addr netip.Addr, port uint16, lc *LegConfig) (*sock, error) { return nil, ErrUnsupported }
func closeFD(fd int)                                                      {}
func isAddrInUse(err error) bool                                          { return false }
func grantedBuffers(so *sock) (sockopt.Granted, error)                    { return sockopt.Granted{}, ErrUnsupported }

func sendDatagram(*sock, []byte, netip.AddrPort) error { return ErrUnsupported }
