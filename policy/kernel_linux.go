package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nsHandle opens netlink handles and subscriptions in one network
// namespace: the current one (the daemon) or one a test created.
type nsHandle struct {
	ns netns.NsHandle // netns.None(): the current namespace
}

// open returns a netlink handle for routing and conntrack.
func (n nsHandle) open() (nlHandle, func(), error) {
	var (
		h   *netlink.Handle
		err error
	)
	if n.ns.IsOpen() {
		h, err = netlink.NewHandleAt(n.ns, unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("policy: opening netlink: %w", err)
	}
	return h, h.Close, nil
}

// subscription is an rtnetlink multicast socket: link, address, route and
// rule notifications of both families. Receive blocks; Close makes a
// blocked Receive return an error.
type subscription struct {
	s *nl.NetlinkSocket
}

// notifyBuffer is the receive buffer of the notification socket: a link
// flap of a full-tunnel edge sends a burst of route deletions, and an
// overflow (ENOBUFS) loses them (the watcher then reconciles anyway).
const notifyBuffer = 1 << 20

func (n nsHandle) subscribe() (eventSource, error) {
	s, err := nl.SubscribeAt(n.ns, netns.None(), unix.NETLINK_ROUTE,
		unix.RTNLGRP_LINK, unix.RTNLGRP_IPV4_IFADDR, unix.RTNLGRP_IPV6_IFADDR,
		unix.RTNLGRP_IPV4_ROUTE, unix.RTNLGRP_IPV6_ROUTE,
		unix.RTNLGRP_IPV4_RULE, unix.RTNLGRP_IPV6_RULE)
	if err != nil {
		return nil, fmt.Errorf("policy: subscribing to rtnetlink: %w", err)
	}
	if err := s.SetReceiveBufferSize(notifyBuffer, true); err != nil {
		// SO_RCVBUFFORCE needs CAP_NET_ADMIN; the default size works,
		// with more ENOBUFS under bursts.
		_ = s.SetReceiveBufferSize(notifyBuffer, false)
	}
	return &subscription{s: s}, nil
}

func (s *subscription) Receive() ([]rawMessage, error) {
	msgs, from, err := s.s.Receive()
	if err != nil {
		if errors.Is(err, unix.ENOBUFS) {
			return nil, errOverrun
		}
		return nil, err
	}
	if from.Pid != nl.PidKernel {
		return nil, nil // not from the kernel: ignore
	}
	out := make([]rawMessage, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, rawMessage{typ: m.Header.Type, data: m.Data})
	}
	return out, nil
}

func (s *subscription) Close() { s.s.Close() }

// readSysctl reads a file under /proc/sys/net of the namespace. For a
// namespace other than the current one it enters the namespace on a locked
// thread: /proc/sys/net shows the namespace of the thread that opens it.
func (n nsHandle) readSysctl(path string) (string, error) {
	full := filepath.Join("/proc/sys/net", path)
	if !n.ns.IsOpen() {
		b, err := os.ReadFile(full)
		return strings.TrimSpace(string(b)), err
	}
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	// A goroutine of its own, locked to its thread and never unlocked: the
	// runtime discards the thread when the goroutine ends, so a thread left
	// in the test namespace is never reused.
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(n.ns); err != nil {
			ch <- result{err: err}
			return
		}
		b, err := os.ReadFile(full)
		ch <- result{b, err}
	}()
	r := <-ch
	return strings.TrimSpace(string(r.b)), r.err
}
