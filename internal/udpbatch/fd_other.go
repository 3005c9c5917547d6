//go:build !linux

package udpbatch

import (
	"net/netip"

	"github.com/mediaedge/mediaedge/internal/sockopt"
)

// The raw-descriptor data path (recvmmsg, sendmmsg, UDP GSO) is Linux's;
// elsewhere these stand-ins fail with ErrUnsupported, so that packages
// built on them compile and report it.

// RecvBatch reads batches of datagrams from a raw socket; Linux only.
type RecvBatch struct{}

// NewRecvBatch returns a RecvBatch whose Recv fails.
func NewRecvBatch(n int) *RecvBatch { return &RecvBatch{} }

// NewRecvBatchOrigDst returns a RecvBatch whose Recv fails.
func NewRecvBatchOrigDst(n int) *RecvBatch { return &RecvBatch{} }

// OrigDst returns the zero AddrPort.
func (b *RecvBatch) OrigDst(i int) netip.AddrPort { return netip.AddrPort{} }

// Cap returns 0.
func (b *RecvBatch) Cap() int { return 0 }

// Recv fails with ErrUnsupported.
func (b *RecvBatch) Recv(fd int, bufs [][]byte) (int, error) { return 0, ErrUnsupported }

// Size returns 0.
func (b *RecvBatch) Size(i int) int { return 0 }

// Truncated returns false.
func (b *RecvBatch) Truncated(i int) bool { return false }

// Addr returns the zero AddrPort.
func (b *RecvBatch) Addr(i int) netip.AddrPort { return netip.AddrPort{} }

// SendBatch sends batches of datagrams on a raw socket; Linux only.
type SendBatch struct{}

// NewSendBatch returns a SendBatch that holds nothing.
func NewSendBatch(n int) *SendBatch { return &SendBatch{} }

// Cap returns 0.
func (b *SendBatch) Cap() int { return 0 }

// Reset empties the batch.
func (b *SendBatch) Reset(v6, gso bool) {}

// Add fails with ErrUnsupported, so that a caller counts the datagram as
// not sent and goes on.
func (b *SendBatch) Add(p []byte, dst netip.AddrPort) error { return ErrUnsupported }

// Len returns 0.
func (b *SendBatch) Len() int { return 0 }

// Segments returns 0.
func (b *SendBatch) Segments(k int) int { return 0 }

// First returns 0.
func (b *SendBatch) First(k int) int { return 0 }

// Positions returns 0.
func (b *SendBatch) Positions() int { return 0 }

// Send fails with ErrUnsupported.
func (b *SendBatch) Send(fd, from int) (int, error) { return 0, ErrUnsupported }

// SendAll fails with ErrUnsupported.
func (b *SendBatch) SendAll(fd int, dropped func(first, n int)) error { return ErrUnsupported }

// TakeGSOCounts returns zeros.
func (b *SendBatch) TakeGSOCounts() (msgs, datagrams uint64) { return 0, 0 }

// Open fails with ErrUnsupported.
func Open(ap netip.AddrPort, o sockopt.Options, dualStack bool) (int, error) {
	return -1, ErrUnsupported
}

// LocalAddr fails with ErrUnsupported.
func LocalAddr(fd int) (netip.AddrPort, error) { return netip.AddrPort{}, ErrUnsupported }

// GSOSupported returns false.
func GSOSupported() bool { return false }

// GSORefused returns false.
func GSORefused(err error) bool { return false }

// Sender sends runs of datagrams on a raw socket; Linux only.
type Sender struct{ gso *GSO }

// NewSender returns a Sender whose Send fails every datagram.
func NewSender(n int, gso *GSO) *Sender { return &Sender{gso: gso} }

// GSO returns the switch the Sender follows.
func (s *Sender) GSO() *GSO { return s.gso }

// Send reports every datagram as not sent.
func (s *Sender) Send(fd int, v6 bool, bufs [][]byte, dsts []netip.AddrPort, failed func(i int)) (int, error) {
	if failed != nil {
		for i := range bufs {
			failed(i)
		}
	}
	return len(bufs), nil
}

// TakeGSOCounts returns zeros.
func (s *Sender) TakeGSOCounts() (msgs, datagrams uint64) { return 0, 0 }
