package relay

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/pion/stun/v4"
)

// TestPutDataIndication: the Data indication the worker builds in place
// decodes, with pion's STUN decoder, to the peer and payload it was built
// from, for both families and every padding; one that would not fit is
// refused and leaves the buffer alone.
func TestPutDataIndication(t *testing.T) {
	txid := [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	for _, peer := range []netip.AddrPort{
		netip.MustParseAddrPort("198.51.100.7:40000"),
		netip.MustParseAddrPort("[2001:db8::7]:3478"),
		netip.MustParseAddrPort("[::ffff:198.51.100.7]:1"),
	} {
		for _, n := range []int{0, 1, 2, 3, 4, 160, 1997} {
			buf := make([]byte, bufSize)
			payload := bytes.Repeat([]byte{0xa5}, n)
			for i := range payload {
				payload[i] = byte(i * 7)
			}
			copy(buf[4:], payload)
			m := putDataIndication(buf, n, peer, &txid)
			if m == 0 || m%4 != 0 {
				t.Fatalf("%s, %d bytes: length %d", peer, n, m)
			}
			msg := &stun.Message{Raw: buf[:m]}
			if err := msg.Decode(); err != nil {
				t.Fatalf("%s, %d bytes: %v", peer, n, err)
			}
			if msg.Type != stun.NewType(stun.MethodData, stun.ClassIndication) || msg.TransactionID != txid {
				t.Errorf("%s, %d bytes: type %s, transaction %x", peer, n, msg.Type, msg.TransactionID)
			}
			var xa stun.XORMappedAddress
			if err := xa.GetFromAs(msg, stun.AttrXORPeerAddress); err != nil {
				t.Fatalf("%s, %d bytes: XOR-PEER-ADDRESS: %v", peer, n, err)
			}
			got, _ := netip.AddrFromSlice(xa.IP)
			if want := netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port()); netip.AddrPortFrom(got.Unmap(), uint16(xa.Port)) != want {
				t.Errorf("%s, %d bytes: peer %s:%d", peer, n, xa.IP, xa.Port)
			}
			data, err := msg.Get(stun.AttrData)
			if err != nil || !bytes.Equal(data, payload) {
				t.Errorf("%s, %d bytes: DATA %d bytes, %v", peer, n, len(data), err)
			}
		}
	}
	buf := bytes.Repeat([]byte{0x5a}, bufSize)
	if m := putDataIndication(buf, 2040, netip.MustParseAddrPort("[2001:db8::7]:3478"), &txid); m != 0 {
		t.Errorf("a 2040-byte datagram became a %d-byte indication in a %d-byte buffer", m, bufSize)
	}
	if !bytes.Equal(buf, bytes.Repeat([]byte{0x5a}, bufSize)) {
		t.Error("a refused indication changed the buffer")
	}
}
