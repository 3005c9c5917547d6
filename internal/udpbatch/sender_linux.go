package udpbatch

import (
	"errors"
	"net/netip"
)

// Sender is the send loop of a raw-descriptor data path: it fills a
// SendBatch with a run of datagrams, sends it with SendAll whenever it is
// full (ErrBatchFull) and at the end, and lets its GSO switch decide
// whether runs to one destination become UDP GSO messages. It never blocks:
// a datagram the kernel refuses (EAGAIN on a full buffer, EPERM from a
// firewall, ENETUNREACH, a destination of the other address family) is
// skipped and reported. Owned by one goroutine; it holds no descriptor and
// needs no closing.
type Sender struct {
	// set in NewSender, never changed
	b       *SendBatch
	gso     *GSO // nil: one datagram per message
	dropFn  func(first, n int)
	addFail func(i int)

	// per Send call
	base   int // index in bufs of the batch's position 0
	failed int
	onFail func(i int)
}

// NewSender returns a Sender that sends up to n datagrams per sendmmsg,
// grouped into UDP GSO messages while gso (shared, may be nil) is on.
func NewSender(n int, gso *GSO) *Sender {
	s := &Sender{b: NewSendBatch(n), gso: gso}
	s.dropFn = s.dropped
	s.addFail = s.fail
	return s
}

// GSO returns the switch the Sender follows (nil: none).
func (s *Sender) GSO() *GSO { return s.gso }

// Send sends bufs[i] to dsts[i] on fd (v6: an AF_INET6 socket) with as
// few sendmmsg calls as the kernel allows, in order, and returns how many
// datagrams were not sent. For each of them it calls failed (when not
// nil) with its index. The error is nil unless this call turned the GSO
// switch off: then it is a *GSODisabledError (errors.Is(err,
// ErrGSODisabled)), to be logged once; nothing was lost.
func (s *Sender) Send(fd int, v6 bool, bufs [][]byte, dsts []netip.AddrPort, failed func(i int)) (int, error) {
	s.failed, s.onFail = 0, failed
	var gsoErr error
	for i := 0; i < len(bufs); {
		s.b.Reset(v6, s.gso.Enabled())
		s.base = i
		for ; i < len(bufs); i++ {
			if err := s.b.Add(bufs[i], dsts[i]); errors.Is(err, ErrBatchFull) {
				break
			} else if err != nil {
				s.addFail(i)
			}
		}
		before := s.b.gsoMsgs
		refused := s.b.SendAll(fd, s.dropFn)
		if err := s.gso.observe(refused, s.b.gsoMsgs-before); err != nil {
			gsoErr = err
		}
	}
	s.b.Reset(v6, false) // keep no datagram reachable
	s.onFail = nil
	return s.failed, gsoErr
}

// dropped is SendAll's callback: positions are indices from s.base.
func (s *Sender) dropped(first, n int) {
	for k := 0; k < n; k++ {
		s.fail(s.base + first + k)
	}
}

func (s *Sender) fail(i int) {
	s.failed++
	if s.onFail != nil {
		s.onFail(i)
	}
}

// TakeGSOCounts returns the UDP GSO messages sent since the last call and
// the datagrams they carried, and starts counting again.
func (s *Sender) TakeGSOCounts() (msgs, datagrams uint64) { return s.b.TakeGSOCounts() }
