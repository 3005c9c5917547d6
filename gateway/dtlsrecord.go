package gateway

import "encoding/binary"

// First-byte demultiplexing of a media port (RFC 7983 section 7): STUN
// 0-3, DTLS 20-63, RTP and RTCP 128-191. Anything else is dropped.
type packetKind uint8

const (
	kindOther packetKind = iota
	kindSTUN
	kindDTLS
	kindRTP
)

// classify returns the kind of a datagram by its first byte.
func classify(b []byte) packetKind {
	if len(b) == 0 {
		return kindOther
	}
	switch c := b[0]; {
	case c <= 3:
		return kindSTUN
	case c >= 20 && c <= 63:
		return kindDTLS
	case c >= 128 && c <= 191:
		return kindRTP
	}
	return kindOther
}

// helloCheck is what checkClientHello found.
type helloCheck uint8

const (
	helloNotHello  helloCheck = iota // not a ClientHello record (or malformed)
	helloPartial                     // a fragment: pion reassembles it
	helloNoSRTP                      // a ClientHello without use_srtp
	helloNoProfile                   // use_srtp without an allowed profile
	helloOK
)

const (
	dtlsRecordHeader     = 13
	dtlsHandshakeHeader  = 12
	dtlsContentHandshake = 22
	dtlsClientHello      = 1
	extUseSRTP           = 14
)

// checkClientHello inspects the first record of a datagram that should
// open a handshake on a passive DTLS leg: a ClientHello at epoch 0 whose
// use_srtp extension offers one of profiles (RFC 5764 section 4.1.1). It
// reads untrusted bytes: it never panics, never allocates, and bounds
// every length by what is there.
// helloRandom returns the random of a whole ClientHello record b (one
// checkClientHello found helloOK).
func helloRandom(b []byte) (r [32]byte) {
	copy(r[:], b[dtlsRecordHeader+dtlsHandshakeHeader+2:])
	return r
}

func checkClientHello(b []byte, profiles []*dtlsProfile) helloCheck {
	if len(b) < dtlsRecordHeader+dtlsHandshakeHeader || b[0] != dtlsContentHandshake {
		return helloNotHello
	}
	if epoch := binary.BigEndian.Uint16(b[3:5]); epoch != 0 {
		return helloNotHello
	}
	rlen := int(binary.BigEndian.Uint16(b[11:13]))
	rec := b[dtlsRecordHeader:]
	if rlen > len(rec) || rlen < dtlsHandshakeHeader {
		return helloNotHello
	}
	rec = rec[:rlen]
	if rec[0] != dtlsClientHello {
		return helloNotHello
	}
	mlen := uint24(rec[1:4])
	off, flen := uint24(rec[6:9]), uint24(rec[9:12])
	body := rec[dtlsHandshakeHeader:]
	if off != 0 || flen != mlen || flen > len(body) {
		return helloPartial
	}
	body = body[:flen]
	// client_version, random
	p := 2 + 32
	// session_id, cookie: <0..32> with a 1-byte length
	for i := 0; i < 2; i++ {
		if p >= len(body) {
			return helloNotHello
		}
		p += 1 + int(body[p])
	}
	// cipher_suites: 2-byte length
	if p+2 > len(body) {
		return helloNotHello
	}
	p += 2 + int(binary.BigEndian.Uint16(body[p:]))
	// compression_methods: 1-byte length
	if p >= len(body) {
		return helloNotHello
	}
	p += 1 + int(body[p])
	if p == len(body) {
		return helloNoSRTP // no extensions at all
	}
	if p+2 > len(body) {
		return helloNotHello
	}
	elen := int(binary.BigEndian.Uint16(body[p:]))
	p += 2
	if p+elen > len(body) {
		return helloNotHello
	}
	exts := body[p : p+elen]
	for len(exts) >= 4 {
		typ := binary.BigEndian.Uint16(exts)
		n := int(binary.BigEndian.Uint16(exts[2:]))
		if 4+n > len(exts) {
			return helloNotHello
		}
		data := exts[4 : 4+n]
		exts = exts[4+n:]
		if typ != extUseSRTP {
			continue
		}
		if len(data) < 2 {
			return helloNotHello
		}
		plen := int(binary.BigEndian.Uint16(data))
		if plen%2 != 0 || 2+plen > len(data) {
			return helloNotHello
		}
		for i := 2; i < 2+plen; i += 2 {
			id := binary.BigEndian.Uint16(data[i:])
			for _, pr := range profiles {
				if uint16(pr.id) == id {
					return helloOK
				}
			}
		}
		return helloNoProfile
	}
	return helloNoSRTP
}

// TLS alert descriptions the gateway sends.
const (
	alertHandshakeFailure     = 40
	alertInsufficientSecurity = 71
)

// fatalAlert returns a plaintext (epoch 0) DTLS 1.2 record carrying a
// fatal alert with description desc.
func fatalAlert(desc byte) [dtlsRecordHeader + 2]byte {
	return [dtlsRecordHeader + 2]byte{21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, desc}
}

func uint24(b []byte) int { return int(b[0])<<16 | int(b[1])<<8 | int(b[2]) }
