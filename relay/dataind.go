package relay

import (
	"encoding/binary"
	"net/netip"
)

// A Data indication (RFC 8656 section 11.6) carries a peer's datagram to a
// client that has a permission for the peer but no channel. The worker
// builds it in place, in the arena buffer the datagram was read into,
// instead of handing the datagram to pion's per-allocation reader: that
// goroutine then never runs after it first parks, so its stack stays at
// the 2 KiB minimum (building a message in it grows the stack to 4 KiB
// for good: the runtime shrinks a stack only when less than a quarter of
// it is in use, and pion's reader frames alone are near that).

const (
	typeDataInd            = 0x0017 // Data, indication
	attrXORPeerAddr        = 0x0012
	attrData               = 0x0013
	dataIndHeader4         = stunHeaderSize + 4 + 8 + 4  // header, XOR-PEER-ADDRESS (IPv4), DATA's type and length
	dataIndHeader6         = stunHeaderSize + 4 + 20 + 4 // the same with an IPv6 peer
	familyIPv4, familyIPv6 = 0x01, 0x02
)

// putDataIndication turns buf, which holds an n-byte datagram from peer at
// buf[4:4+n], into a Data indication with transaction ID txid and returns
// its length; 0 (buf unchanged) when the indication would not fit in buf.
func putDataIndication(buf []byte, n int, peer netip.AddrPort, txid *[12]byte) int {
	ip := peer.Addr().Unmap()
	hdr := dataIndHeader4
	if !ip.Is4() {
		hdr = dataIndHeader6
	}
	pad := (4 - n%4) % 4
	total := hdr + n + pad
	if total > len(buf) || n+4 > len(buf) {
		return 0
	}
	copy(buf[hdr:hdr+n], buf[4:4+n])
	clear(buf[hdr+n : total])
	binary.BigEndian.PutUint16(buf[0:2], typeDataInd)
	binary.BigEndian.PutUint16(buf[2:4], uint16(total-stunHeaderSize))
	binary.BigEndian.PutUint32(buf[4:8], stunMagicCookie)
	copy(buf[8:20], txid[:])
	a := buf[stunHeaderSize:]
	binary.BigEndian.PutUint16(a[0:2], attrXORPeerAddr)
	a[4] = 0
	binary.BigEndian.PutUint16(a[6:8], peer.Port()^(stunMagicCookie>>16))
	if ip.Is4() {
		binary.BigEndian.PutUint16(a[2:4], 8)
		a[5] = familyIPv4
		v := ip.As4()
		binary.BigEndian.PutUint32(a[8:12], binary.BigEndian.Uint32(v[:])^stunMagicCookie)
		a = a[12:]
	} else {
		binary.BigEndian.PutUint16(a[2:4], 20)
		a[5] = familyIPv6
		v := ip.As16()
		// XORed with the magic cookie and the transaction ID, which
		// buf[4:20] holds.
		for i := range v {
			a[8+i] = v[i] ^ buf[4+i]
		}
		a = a[24:]
	}
	binary.BigEndian.PutUint16(a[0:2], attrData)
	binary.BigEndian.PutUint16(a[2:4], uint16(n))
	return total
}
