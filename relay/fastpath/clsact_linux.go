package fastpath

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The clsact fallback (kernels before 6.6, without tcx) uses one filter at
// a fixed priority and handle, so attaching replaces whatever a killed
// earlier run left there: tc filters, unlike tcx links, outlive their owner.
const (
	clsactPrio   = 0x4d45 // "ME"
	clsactHandle = 1
	clsactName   = "mediaedge_turnfwd"
)

func clsactFilter(ifindex int, prog *ebpf.Program) *netlink.BpfFilter {
	return &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    netlink.HANDLE_MIN_INGRESS,
			Handle:    clsactHandle,
			Protocol:  unix.ETH_P_ALL,
			Priority:  clsactPrio,
		},
		Fd:           prog.FD(),
		Name:         clsactName,
		DirectAction: true,
	}
}

// attachClsact adds a clsact qdisc if there is none and puts the program at
// ingress, replacing a stale filter of an earlier run. It returns the detach
// function.
func attachClsact(ifindex int, prog *ebpf.Program) (func() error, error) {
	qd := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: ifindex,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	// EEXIST: the qdisc is there already (ours from a killed run, or
	// someone else's); it is shared and never removed by us.
	if err := netlink.QdiscAdd(qd); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("adding clsact qdisc: %w", err)
	}
	f := clsactFilter(ifindex, prog)
	if err := netlink.FilterReplace(f); err != nil {
		return nil, fmt.Errorf("adding tc filter: %w", err)
	}
	info, err := prog.Info()
	if err != nil {
		return nil, fmt.Errorf("reading program info: %w", err)
	}
	id, _ := info.ID()
	return func() error { return detachClsact(ifindex, prog, int(id)) }, nil
}

// detachClsact removes the filter only if it still runs program id: a newer
// run may have replaced it, and its filter must stay.
func detachClsact(ifindex int, prog *ebpf.Program, id int) error {
	lnk, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return nil // interface gone: so is the filter
	}
	fs, err := netlink.FilterList(lnk, netlink.HANDLE_MIN_INGRESS)
	if err != nil {
		return fmt.Errorf("listing tc filters: %w", err)
	}
	for _, f := range fs {
		if bf, ok := f.(*netlink.BpfFilter); ok && bf.Priority == clsactPrio && bf.Id == id {
			// ENOENT: removed meanwhile, which is what we wanted.
			if err := netlink.FilterDel(clsactFilter(ifindex, prog)); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("removing tc filter: %w", err)
			}
		}
	}
	return nil
}
