package policy

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// attr encodes one netlink attribute, padded.
func attr(typ uint16, val []byte) []byte {
	l := unix.SizeofRtAttr + len(val)
	b := binary.NativeEndian.AppendUint16(nil, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, val...)
	for len(b)%unix.RTA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func linkMsg(index int, name string) []byte {
	b := make([]byte, sizeIfInfomsg)
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	return append(b, attr(iflaIfname, append([]byte(name), 0))...)
}

func routeMsg(family uint8, table, proto, oif int) []byte {
	b := make([]byte, sizeRtmsg)
	b[0], b[4], b[5] = family, byte(min(table, 252)), byte(proto)
	b = append(b, attr(rtaTable, u32(uint32(table)))...)
	if oif > 0 {
		b = append(b, attr(rtaOif, u32(uint32(oif)))...)
	}
	return b
}

func ruleMsg(family uint8, table, proto int) []byte {
	b := make([]byte, sizeFibRuleHdr)
	b[0] = family
	b = append(b, attr(fraTable, u32(uint32(table)))...)
	return append(b, attr(fraProtocol, []byte{byte(proto)})...)
}

func addrMsg(index int) []byte {
	b := make([]byte, sizeIfAddrmsg)
	binary.NativeEndian.PutUint32(b[4:], uint32(index))
	return b
}

func TestDecodeEvent(t *testing.T) {
	ev, err := decodeEvent(unix.RTM_NEWLINK, linkMsg(7, "wan0"))
	if err != nil || ev.kind != evLink || ev.index != 7 || ev.name != "wan0" || ev.del {
		t.Errorf("link: %+v %v", ev, err)
	}
	ev, err = decodeEvent(unix.RTM_DELROUTE, routeMsg(unix.AF_INET6, 300, 77, 7))
	if err != nil || ev.kind != evRoute || !ev.del || ev.table != 300 || ev.protocol != 77 || ev.index != 7 {
		t.Errorf("route: %+v %v", ev, err)
	}
	ev, err = decodeEvent(unix.RTM_NEWRULE, ruleMsg(unix.AF_INET, 101, 77))
	if err != nil || ev.kind != evRule || ev.table != 101 || ev.protocol != 77 {
		t.Errorf("rule: %+v %v", ev, err)
	}
	ev, err = decodeEvent(unix.RTM_DELADDR, addrMsg(7))
	if err != nil || ev.kind != evAddr || ev.index != 7 || !ev.del {
		t.Errorf("addr: %+v %v", ev, err)
	}
	if _, err := decodeEvent(unix.RTM_NEWROUTE, []byte{1, 2, 3}); err == nil {
		t.Error("short route message decoded")
	}
	if _, err := decodeEvent(unix.RTM_NEWLINK, append(make([]byte, sizeIfInfomsg), 0xff, 0x00, 3, 0)); err == nil {
		t.Error("attribute longer than the message decoded")
	}
	if ev, err := decodeEvent(unix.RTM_NEWNEIGH, []byte{1}); err != nil || ev.kind != 0 {
		t.Errorf("unwatched type: %+v %v", ev, err)
	}
}

func TestEventRelevance(t *testing.T) {
	f := &eventFilter{uplink: "wan0", index: 7, tables: []int{100, 101}, protos: []uint8{77}}
	tests := []struct {
		name string
		ev   event
		want bool
	}{
		{"uplink flap", event{kind: evLink, index: 7}, true},
		{"uplink recreated with a new index", event{kind: evLink, index: 9, name: "wan0"}, true},
		{"other link", event{kind: evLink, index: 3, name: "lan0"}, false},
		{"uplink address", event{kind: evAddr, index: 7}, true},
		{"other address", event{kind: evAddr, index: 3}, false},
		{"our route deleted", event{kind: evRoute, del: true, table: 100, protocol: 77}, true},
		{"our own add echoed", event{kind: evRoute, table: 100, protocol: 77}, false},
		{"foreign route in our table", event{kind: evRoute, table: 101, protocol: 3}, true},
		{"main route via the uplink (gateway)", event{kind: evRoute, table: tableMain, index: 7}, true},
		{"main route elsewhere", event{kind: evRoute, table: tableMain, index: 3}, false},
		{"route in another table", event{kind: evRoute, table: 220, index: 7}, false},
		{"our rule deleted", event{kind: evRule, del: true, protocol: 77}, true},
		{"our rule added", event{kind: evRule, protocol: 77}, false},
		{"foreign rule added", event{kind: evRule, protocol: 3}, true},
	}
	for _, tt := range tests {
		if got := f.relevant(tt.ev); got != tt.want {
			t.Errorf("%s: relevant = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// FuzzDecodeEvent feeds arbitrary payloads of every watched message type
// to the decoder: errors are fine, panics are not.
func FuzzDecodeEvent(f *testing.F) {
	f.Add(uint16(unix.RTM_NEWLINK), linkMsg(7, "wan0"))
	f.Add(uint16(unix.RTM_DELROUTE), routeMsg(unix.AF_INET, 100, 77, 7))
	f.Add(uint16(unix.RTM_NEWRULE), ruleMsg(unix.AF_INET6, 101, 77))
	f.Add(uint16(unix.RTM_NEWADDR), addrMsg(7))
	f.Fuzz(func(t *testing.T, typ uint16, data []byte) {
		ev, err := decodeEvent(typ, data)
		if err == nil && ev.kind == evLink && len(ev.name) > len(data) {
			t.Fatalf("name longer than the message: %q", ev.name)
		}
		(&eventFilter{uplink: "wan0", index: 7, tables: []int{100}, protos: []uint8{77}}).relevant(ev)
	})
}
