package capture

import (
	"encoding/binary"
	"fmt"
)

// pcapng block types (pcapng draft, section 11.1).
const (
	ngBlockInterface  = 1
	ngBlockPacket     = 2 // obsolete packet block
	ngBlockSimple     = 3
	ngBlockEnhanced   = 6
	ngOptTSResolution = 9
	ngOptTSOffset     = 14
)

// canonicalPcapng validates the block structure of a pcapng file and
// rewrites it for pcapgo: little-endian, no options except each interface's
// timestamp resolution and offset, every packet as an enhanced packet
// block. pcapgo trusts the lengths inside a block (an option running past
// its block desynchronises it, and it allocates a packet's announced length
// before reading it) and panics on some option values; after this pass
// every length it reads is consistent and every value valid. It also
// returns the interfaces' link types by their low byte, which is all
// pcapgo 1.1.19 reports.
func canonicalPcapng(data []byte) ([]byte, map[uint8]linkType, error) {
	out := make([]byte, 0, len(data)+len(data)/8)
	real := map[uint8]linkType{}
	le := binary.LittleEndian
	var order binary.ByteOrder = binary.LittleEndian
	corrupt := func(block int, format string, args ...any) error {
		return &CaptureError{Block: block, Err: fmt.Errorf("%w: %s", ErrCorruptCapture, fmt.Sprintf(format, args...))}
	}
	block := func(typ uint32, body []byte) {
		n := 12 + (len(body)+3)&^3
		out = le.AppendUint32(out, typ)
		out = le.AppendUint32(out, uint32(n))
		out = append(out, body...)
		for i := len(body); i%4 != 0; i++ {
			out = append(out, 0)
		}
		out = le.AppendUint32(out, uint32(n))
	}
	nIfaces, inSection := 0, false
	for off, n := 0, 1; off < len(data); n++ {
		if len(data)-off < 12 {
			return nil, nil, corrupt(n, "file ends inside the block header")
		}
		typ := binary.BigEndian.Uint32(data[off:])
		if typ == magicPcapng {
			switch binary.BigEndian.Uint32(data[off+8:]) {
			case 0x1a2b3c4d:
				order = binary.BigEndian
			case 0x4d3c2b1a:
				order = binary.LittleEndian
			default:
				return nil, nil, corrupt(n, "bad byte-order magic")
			}
		} else {
			typ = order.Uint32(data[off:])
		}
		blen := int(order.Uint32(data[off+4:]))
		if blen < 12 || blen%4 != 0 || blen > len(data)-off {
			return nil, nil, corrupt(n, "length %d with %d bytes left", blen, len(data)-off)
		}
		if order.Uint32(data[off+blen-4:]) != uint32(blen) {
			return nil, nil, corrupt(n, "trailing length differs from leading length")
		}
		body := data[off+8 : off+blen-4]
		off += blen
		if typ != magicPcapng && !inSection {
			return nil, nil, corrupt(n, "block before the first section header")
		}
		switch typ {
		case magicPcapng:
			if len(body) < 12 {
				return nil, nil, corrupt(n, "short section header")
			}
			if order.Uint16(body[4:]) != 1 {
				return nil, nil, corrupt(n, "pcapng major version %d", order.Uint16(body[4:]))
			}
			shb := le.AppendUint32(nil, 0x1a2b3c4d)
			shb = le.AppendUint16(shb, 1)
			shb = le.AppendUint16(shb, 0)
			shb = le.AppendUint64(shb, ^uint64(0)) // section length unknown
			block(magicPcapng, shb)
			nIfaces, inSection = 0, true
		case ngBlockInterface:
			if len(body) < 8 {
				return nil, nil, corrupt(n, "short interface block")
			}
			lt := linkType(order.Uint16(body))
			real[uint8(lt)] = lt
			idb := le.AppendUint16(nil, uint16(lt))
			idb = le.AppendUint16(idb, 0)
			idb = le.AppendUint32(idb, order.Uint32(body[4:]))
			opts, err := ngOptions(body[8:], order)
			if err != nil {
				return nil, nil, corrupt(n, "%v", err)
			}
			if v, ok := opts[ngOptTSResolution]; ok && len(v) >= 1 {
				// pcapgo divides by 2^e or 10^e: both must fit a uint64.
				if e := v[0] & 0x7f; v[0]&0x80 != 0 && e > 63 || v[0]&0x80 == 0 && e > 19 {
					return nil, nil, corrupt(n, "timestamp resolution %#x out of range", v[0])
				}
				idb = append(le.AppendUint16(le.AppendUint16(idb, ngOptTSResolution), 1), v[0], 0, 0, 0)
			}
			if v, ok := opts[ngOptTSOffset]; ok && len(v) >= 8 {
				idb = le.AppendUint64(le.AppendUint16(le.AppendUint16(idb, ngOptTSOffset), 8), order.Uint64(v))
			}
			idb = append(idb, 0, 0, 0, 0) // opt_endofopt
			block(ngBlockInterface, idb)
			nIfaces++
		case ngBlockEnhanced, ngBlockPacket:
			if len(body) < 20 {
				return nil, nil, corrupt(n, "short packet block")
			}
			var iface uint32
			if typ == ngBlockEnhanced {
				iface = order.Uint32(body)
			} else {
				iface = uint32(order.Uint16(body))
			}
			caplen, origlen := order.Uint32(body[12:]), order.Uint32(body[16:])
			if int(iface) >= nIfaces {
				return nil, nil, corrupt(n, "packet on undeclared interface %d", iface)
			}
			if int(caplen) > len(body)-20 {
				return nil, nil, corrupt(n, "captured length %d longer than its block", caplen)
			}
			epb := le.AppendUint32(nil, iface)
			epb = le.AppendUint32(epb, order.Uint32(body[4:]))
			epb = le.AppendUint32(epb, order.Uint32(body[8:]))
			epb = le.AppendUint32(epb, caplen)
			epb = le.AppendUint32(epb, max(origlen, caplen))
			epb = append(epb, body[20:20+caplen]...)
			block(ngBlockEnhanced, epb)
		case ngBlockSimple:
			if len(body) < 4 {
				return nil, nil, corrupt(n, "short simple packet block")
			}
			if nIfaces == 0 {
				return nil, nil, corrupt(n, "packet before any interface")
			}
			// A simple packet block holds min(original length, snap
			// length) bytes; keep what is there, as an enhanced block
			// without a timestamp.
			caplen := min(int(order.Uint32(body)), len(body)-4)
			epb := le.AppendUint32(nil, 0)
			epb = le.AppendUint64(epb, 0)
			epb = le.AppendUint32(epb, uint32(caplen))
			epb = le.AppendUint32(epb, max(order.Uint32(body), uint32(caplen)))
			epb = append(epb, body[4:4+caplen]...)
			block(ngBlockEnhanced, epb)
		default:
			// name resolution, statistics, journal, custom blocks: not needed
		}
	}
	return out, real, nil
}

// ngOptions splits a pcapng options list, checking every length.
func ngOptions(b []byte, order binary.ByteOrder) (map[uint16][]byte, error) {
	opts := map[uint16][]byte{}
	for len(b) >= 4 {
		code, l := order.Uint16(b), int(order.Uint16(b[2:]))
		if code == 0 {
			break
		}
		padded := (l + 3) &^ 3
		if padded > len(b)-4 {
			return nil, fmt.Errorf("option %d runs past its block", code)
		}
		opts[code] = b[4 : 4+l]
		b = b[4+padded:]
	}
	return opts, nil
}
