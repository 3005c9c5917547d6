package policy

import (
	"encoding/binary"
	"errors"
	"slices"

	"golang.org/x/sys/unix"
)

// eventKind is the object an rtnetlink notification is about.
type eventKind uint8

const (
	evLink eventKind = iota + 1
	evAddr
	evRoute
	evRule
)

// event is the part of an rtnetlink notification the watcher needs to
// decide whether to reconcile.
type event struct {
	kind     eventKind
	del      bool
	family   uint8
	index    int    // link: ifindex; addr: ifindex; route: output ifindex
	name     string // link name
	table    int    // route, rule
	protocol uint8  // route, rule
}

var errShortEvent = errors.New("policy: truncated netlink notification")

// errOverrun is returned by an eventSource whose socket buffer overflowed
// (ENOBUFS): notifications were lost, and only a full reconcile can tell
// what changed.
var errOverrun = errors.New("policy: netlink notifications lost (socket buffer overrun)")

// rawMessage is one netlink message: type and payload.
type rawMessage struct {
	typ  uint16
	data []byte
}

// eventSource delivers rtnetlink notifications. Receive blocks until
// messages arrive; Close makes a blocked Receive return an error. The
// Manager owns it: one goroutine receives, Close is called once.
type eventSource interface {
	Receive() ([]rawMessage, error)
	Close()
}

// Header sizes of the rtnetlink messages decoded here.
const (
	sizeIfInfomsg  = 16 // family, pad, type, index, flags, change
	sizeIfAddrmsg  = 8  // family, prefixlen, flags, scope, index
	sizeRtmsg      = 12 // family, dst_len, src_len, tos, table, protocol, scope, type, flags
	sizeFibRuleHdr = 12 // family, dst_len, src_len, tos, table, res1, res2, action, flags
)

// Attribute types (linux/if_link.h, linux/rtnetlink.h, linux/fib_rules.h).
const (
	iflaIfname  = 3
	rtaOif      = 4
	rtaTable    = 15
	fraTable    = 15
	fraProtocol = 21
)

// decodeEvent decodes one rtnetlink notification (message type and
// payload). It reads the kernel's bytes defensively: a short or malformed
// message is an error, never a panic. Message types it does not watch
// decode to a zero kind.
func decodeEvent(typ uint16, data []byte) (event, error) {
	var ev event
	ne := binary.NativeEndian
	switch typ {
	case unix.RTM_NEWLINK, unix.RTM_DELLINK:
		if len(data) < sizeIfInfomsg {
			return ev, errShortEvent
		}
		ev.kind, ev.del = evLink, typ == unix.RTM_DELLINK
		ev.family = data[0]
		ev.index = int(int32(ne.Uint32(data[4:8])))
		err := walkAttrs(data[sizeIfInfomsg:], func(t uint16, v []byte) {
			if t == iflaIfname {
				ev.name = cString(v)
			}
		})
		return ev, err
	case unix.RTM_NEWADDR, unix.RTM_DELADDR:
		if len(data) < sizeIfAddrmsg {
			return ev, errShortEvent
		}
		ev.kind, ev.del = evAddr, typ == unix.RTM_DELADDR
		ev.family = data[0]
		ev.index = int(ne.Uint32(data[4:8]))
		return ev, nil
	case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
		if len(data) < sizeRtmsg {
			return ev, errShortEvent
		}
		ev.kind, ev.del = evRoute, typ == unix.RTM_DELROUTE
		ev.family, ev.table, ev.protocol = data[0], int(data[4]), data[5]
		err := walkAttrs(data[sizeRtmsg:], func(t uint16, v []byte) {
			switch {
			case t == rtaTable && len(v) >= 4:
				ev.table = int(ne.Uint32(v))
			case t == rtaOif && len(v) >= 4:
				ev.index = int(ne.Uint32(v))
			}
		})
		return ev, err
	case unix.RTM_NEWRULE, unix.RTM_DELRULE:
		if len(data) < sizeFibRuleHdr {
			return ev, errShortEvent
		}
		ev.kind, ev.del = evRule, typ == unix.RTM_DELRULE
		ev.family, ev.table = data[0], int(data[4])
		err := walkAttrs(data[sizeFibRuleHdr:], func(t uint16, v []byte) {
			switch {
			case t == fraTable && len(v) >= 4:
				ev.table = int(ne.Uint32(v))
			case t == fraProtocol && len(v) >= 1:
				ev.protocol = v[0]
			}
		})
		return ev, err
	}
	return ev, nil
}

// walkAttrs calls f for each netlink attribute in b (type without the
// nested and byte-order flags).
func walkAttrs(b []byte, f func(typ uint16, val []byte)) error {
	ne := binary.NativeEndian
	for len(b) >= unix.SizeofRtAttr {
		l := int(ne.Uint16(b[0:2]))
		if l < unix.SizeofRtAttr || l > len(b) {
			return errShortEvent
		}
		f(ne.Uint16(b[2:4])&^(unix.NLA_F_NESTED|unix.NLA_F_NET_BYTEORDER), b[unix.SizeofRtAttr:l])
		al := (l + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1)
		if al >= len(b) {
			return nil
		}
		b = b[al:]
	}
	return nil
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// eventFilter decides which notifications can change what the reconciler
// would do. It is rebuilt after every pass and read by the watcher through
// an atomic pointer; it is never modified once published.
type eventFilter struct {
	uplink string
	index  int
	tables []int
	protos []uint8
}

// relevant reports whether ev calls for a reconcile:
//   - the uplink's link and addresses (state, carrier, addresses);
//   - routes in mediaedge's tables, except its own additions echoed back;
//   - main-table routes through the uplink (its gateway);
//   - every rule change except its own additions: rules are few, and a
//     foreign rule can shadow mediaedge's.
//
// The kernel sends no RTM_DELROUTE for IPv4 routes it removes when a link
// goes down, so the link event itself must trigger the repair.
func (f *eventFilter) relevant(ev event) bool {
	own := slices.Contains(f.protos, ev.protocol)
	switch ev.kind {
	case evLink:
		return (f.index > 0 && ev.index == f.index) || (ev.name != "" && ev.name == f.uplink)
	case evAddr:
		return f.index > 0 && ev.index == f.index
	case evRoute:
		if slices.Contains(f.tables, ev.table) {
			return ev.del || !own
		}
		return ev.table == tableMain && f.index > 0 && ev.index == f.index
	case evRule:
		return ev.del || !own
	}
	return false
}
