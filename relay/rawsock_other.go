//go:build !linux

package relay

import (
	"errors"
	"net/netip"

	"github.com/mediaedge/mediaedge/internal/udpbatch"
)

// The relay's data path needs Linux (epoll, recvmmsg, sendmmsg, UDP GSO,
// SO_MARK). Elsewhere the package builds, so that tools and tests of other
// packages compile, and Start fails with errUnsupported.
var errUnsupported = errors.New("relay: the TURN relay runs on Linux only")

type sockFD struct{ fd int }

func (s *sockFD) acquire() bool { return false }
func (s *sockFD) release()      {}
func (s *sockFD) close() bool   { return false }
func (s *sockFD) send(_ *udpbatch.Sender, _ bool, bufs [][]byte, _ []netip.AddrPort) (int, error) {
	return len(bufs), nil
}

type sockOpts struct {
	mark   uint32
	buffer int
}

func openUDP(netip.AddrPort, sockOpts) (int, error) { return -1, errUnsupported }
func isAddrInUse(error) bool                        { return false }

type worker struct{}

func newWorker(*Server, int, []*udpGroup) (*worker, error) { return nil, errUnsupported }
func (w *worker) add(fd, slot int) error                   { return errUnsupported }
func (w *worker) remove(int)                               {}
func (w *worker) run()                                     {}
func (w *worker) Close() error                             { return nil }
