package policy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Check asks the kernel of the current network namespace how it routes q,
// with every selector q has (RTA_IP_PROTO, RTA_SPORT and RTA_DPORT need
// Linux 4.17, like the rules that use them).
func Check(q CheckQuery) (CheckResult, error) { return checkIn(netns.None(), q) }

func checkIn(ns netns.NsHandle, q CheckQuery) (CheckResult, error) {
	var res CheckResult
	if !q.Dst.IsValid() {
		return res, errors.New("policy: check needs a destination address")
	}
	dst := q.Dst.Unmap()
	family, bits := unix.AF_INET, 32
	if dst.Is6() {
		family, bits = unix.AF_INET6, 128
	}
	if q.Src.IsValid() && q.Src.Unmap().Is4() != dst.Is4() {
		return res, fmt.Errorf("policy: source %s and destination %s are of different families", q.Src, dst)
	}
	if q.Iif != "" && !q.Src.IsValid() {
		return res, errors.New("policy: a forwarded flow (iif) needs its source address")
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return res, fmt.Errorf("policy: opening netlink: %w", err)
	}
	defer h.Close()

	req := nl.NewNetlinkRequest(unix.RTM_GETROUTE, 0)
	msg := &nl.RtMsg{RtMsg: unix.RtMsg{Family: uint8(family), Dst_len: uint8(bits), Flags: unix.RTM_F_LOOKUP_TABLE}}
	if q.Src.IsValid() {
		msg.Src_len = uint8(bits)
	}
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.RTA_DST, dst.AsSlice()))
	if q.Src.IsValid() {
		req.AddData(nl.NewRtAttr(unix.RTA_SRC, q.Src.Unmap().AsSlice()))
	}
	if q.Iif != "" {
		l, err := h.LinkByName(q.Iif)
		if err != nil {
			return res, fmt.Errorf("policy: input interface %q: %w", q.Iif, err)
		}
		req.AddData(nl.NewRtAttr(unix.RTA_IIF, nl.Uint32Attr(uint32(l.Attrs().Index))))
	}
	if q.Mark != 0 {
		req.AddData(nl.NewRtAttr(unix.RTA_MARK, nl.Uint32Attr(q.Mark)))
	}
	if q.Proto != 0 {
		req.AddData(nl.NewRtAttr(unix.RTA_IP_PROTO, []byte{uint8(q.Proto)}))
	}
	// RTA_SPORT and RTA_DPORT are in network byte order.
	if q.Sport != 0 {
		req.AddData(nl.NewRtAttr(unix.RTA_SPORT, binary.BigEndian.AppendUint16(nil, q.Sport)))
	}
	if q.Dport != 0 {
		req.AddData(nl.NewRtAttr(unix.RTA_DPORT, binary.BigEndian.AppendUint16(nil, q.Dport)))
	}
	if ns.IsOpen() {
		s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
		if err != nil {
			return res, fmt.Errorf("policy: opening netlink: %w", err)
		}
		defer s.Close()
		req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}
	}
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWROUTE)
	if err != nil {
		var errno unix.Errno
		if errors.As(err, &errno) && (errno == unix.ENETUNREACH || errno == unix.EHOSTUNREACH ||
			errno == unix.EACCES || errno == unix.EINVAL) {
			res.Refused = errno.Error()
			if errno == unix.EINVAL && q.Iif != "" {
				res.Refused += " (on input, usually the reverse-path filter)"
			}
			return res, nil
		}
		return res, fmt.Errorf("policy: route lookup %s: %w", q, err)
	}
	if len(msgs) == 0 {
		return res, fmt.Errorf("policy: route lookup %s: empty answer", q)
	}
	return parseRouteAnswer(h, msgs[0])
}

// parseRouteAnswer decodes the kernel's RTM_NEWROUTE answer to a lookup.
func parseRouteAnswer(h *netlink.Handle, m []byte) (CheckResult, error) {
	var res CheckResult
	if len(m) < sizeRtmsg {
		return res, errShortEvent
	}
	table, typ := int(m[4]), int(m[7])
	var oif int
	err := walkAttrs(m[sizeRtmsg:], func(t uint16, v []byte) {
		switch t {
		case unix.RTA_TABLE:
			if len(v) >= 4 {
				table = int(binary.NativeEndian.Uint32(v))
			}
		case unix.RTA_OIF:
			if len(v) >= 4 {
				oif = int(binary.NativeEndian.Uint32(v))
			}
		case unix.RTA_GATEWAY:
			if a, ok := netip.AddrFromSlice(v); ok {
				res.Gateway = a.Unmap().String()
			}
		case unix.RTA_PREFSRC:
			if a, ok := netip.AddrFromSlice(v); ok {
				res.Src = a.Unmap().String()
			}
		}
	})
	if err != nil {
		return res, err
	}
	res.Table = tableName(table)
	res.Type = routeTypeName(typ)
	if res.Type == "" {
		res.Type = "unicast"
	}
	if oif > 0 && (typ == unix.RTN_UNICAST || typ == unix.RTN_LOCAL) {
		if l, err := h.LinkByIndex(oif); err == nil {
			res.Dev = l.Attrs().Name
		} else {
			res.Dev = "if" + strconv.Itoa(oif)
		}
	}
	return res, nil
}
