package e2e

import (
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Flow is one direction of one audio stream: what its sender sent, when,
// and what its receiver got, when and from where. Senders and receivers
// record into it from their own goroutines; the checks read it. It is safe
// for concurrent use.
type Flow struct {
	// set in newFlow, never changed
	Name   string
	SSRC   uint32
	TSBase uint32
	Hz     float64
	// ToCloud is set on flows whose receiver is in the internet: the
	// source it sees tells which way the edge sent them. Uplink is the
	// source it must see: the edge's uplink address of the flow's family.
	ToCloud bool
	Uplink  netip.Addr

	// counters updated by the receiver
	authFail  atomic.Int64 // did not authenticate with the receiver's key
	foreign   atomic.Int64 // authenticated with a key that must never appear here
	mismatch  atomic.Int64 // authenticated, but the audio is not the frame sent
	sendError atomic.Int64 // the sender's write failed (unreachable while a link is down)

	mu       sync.Mutex
	sentAt   []time.Time // by frame index
	arrivals []arrival
}

// arrival is one authenticated, intact packet at the receiver.
type arrival struct {
	idx uint32
	at  time.Time
	src netip.AddrPort
}

// newFlow makes a flow; uplink is the source a cloud-bound flow must be
// seen from, the zero Addr for a flow towards the client.
func newFlow(name string, ssrc, tsBase uint32, hz float64, uplink netip.Addr) *Flow {
	return &Flow{Name: name, SSRC: ssrc, TSBase: tsBase, Hz: hz, ToCloud: uplink.IsValid(), Uplink: uplink}
}

func (f *Flow) recordSent(idx uint32, at time.Time) {
	f.mu.Lock()
	for uint32(len(f.sentAt)) <= idx {
		f.sentAt = append(f.sentAt, time.Time{})
	}
	f.sentAt[idx] = at
	f.mu.Unlock()
}

func (f *Flow) recordArrival(idx uint32, at time.Time, src netip.AddrPort) {
	f.mu.Lock()
	f.arrivals = append(f.arrivals, arrival{idx, at, src})
	f.mu.Unlock()
}

// Window is what a Flow did between two instants.
type Window struct {
	// Sent counts frames sent in the window (early enough to have
	// arrived by its end); Received how many of those arrived intact.
	Sent, Received int
	// Lost lists the frame indexes sent and not received.
	Lost []uint32
	// Sources counts the packets that arrived in the window by the
	// address they came from.
	Sources map[netip.Addr]int
	// FirstArrival is the first arrival in the window (zero if none).
	FirstArrival time.Time
}

// inFlight is how long after sending a frame the window waits before
// counting it lost: far more than a veth path takes.
const inFlight = 300 * time.Millisecond

// Window reports the frames sent in [from, to-inFlight] and the arrivals in
// [from, to].
func (f *Flow) Window(from, to time.Time) Window {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := Window{Sources: map[netip.Addr]int{}}
	got := map[uint32]bool{}
	for _, a := range f.arrivals {
		got[a.idx] = true
		if a.at.Before(from) || a.at.After(to) {
			continue
		}
		w.Sources[a.src.Addr()]++
		if w.FirstArrival.IsZero() || a.at.Before(w.FirstArrival) {
			w.FirstArrival = a.at
		}
	}
	last := to.Add(-inFlight)
	for i, t := range f.sentAt {
		if t.IsZero() || t.Before(from) || t.After(last) {
			continue
		}
		w.Sent++
		if got[uint32(i)] {
			w.Received++
		} else {
			w.Lost = append(w.Lost, uint32(i))
		}
	}
	return w
}

// Totals returns the frames sent and received intact so far.
func (f *Flow) Totals() (sent, received int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.sentAt {
		if !t.IsZero() {
			sent++
		}
	}
	seen := map[uint32]bool{}
	for _, a := range f.arrivals {
		seen[a.idx] = true
	}
	return sent, len(seen)
}

// SentBetween returns the frame indexes sent in [from, to].
func (f *Flow) SentBetween(from, to time.Time) []uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []uint32
	for i, t := range f.sentAt {
		if !t.IsZero() && !t.Before(from) && !t.After(to) {
			out = append(out, uint32(i))
		}
	}
	return out
}

// ArrivalsFrom returns the arrival times from src after t, sorted.
func (f *Flow) ArrivalsFrom(src netip.Addr, after time.Time) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Time
	for _, a := range f.arrivals {
		if a.src.Addr() == src && a.at.After(after) {
			out = append(out, a.at)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}
