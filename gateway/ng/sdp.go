package ng

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// Limits of the SDP parser.
const (
	// MaxSDP bounds an SDP body.
	MaxSDP = 16 << 10
	// MaxMedia bounds the m= lines of one SDP.
	MaxMedia = 8
	// MaxAttributes bounds the a= lines of one SDP.
	MaxAttributes = 512
	// MaxCrypto bounds the a=crypto lines of one m= line.
	MaxCrypto = 16
)

// Transport protocols of RTP m= lines the relay handles.
const (
	ProtoAVP   = "RTP/AVP"
	ProtoSAVP  = "RTP/SAVP"
	ProtoAVPF  = "RTP/AVPF"
	ProtoSAVPF = "RTP/SAVPF"
	// ProtoTLSSAVP and ProtoTLSSAVPF are DTLS-SRTP (RFC 5764 section 8):
	// what browsers offer and expect.
	ProtoTLSSAVP  = "UDP/TLS/RTP/SAVP"
	ProtoTLSSAVPF = "UDP/TLS/RTP/SAVPF"
)

// ValidProto reports whether p is one of the four RTP profiles or one of
// the two DTLS-SRTP ones.
func ValidProto(p string) bool {
	switch p {
	case ProtoAVP, ProtoSAVP, ProtoAVPF, ProtoSAVPF, ProtoTLSSAVP, ProtoTLSSAVPF:
		return true
	}
	return false
}

// Secure reports whether p is an SRTP profile.
func Secure(p string) bool {
	return p == ProtoSAVP || p == ProtoSAVPF || p == ProtoTLSSAVP || p == ProtoTLSSAVPF
}

// OverDTLS reports whether p keys SRTP with DTLS (UDP/TLS/RTP/SAVP[F]).
func OverDTLS(p string) bool { return p == ProtoTLSSAVP || p == ProtoTLSSAVPF }

// Media is what the relay needs from one m= line.
type Media struct {
	// Type is "audio", "video", ...; Proto the transport protocol.
	Type, Proto string
	// Addr and Port are where the endpoint receives RTP; Port 0 is a
	// disabled stream (passed through, nothing allocated).
	Addr netip.Addr
	Port int
	// RTCPPort is where it receives RTCP (a=rtcp, or Port+1).
	RTCPPort int
	// Mux is set when the m= line has a=rtcp-mux.
	Mux bool
	// Crypto holds the a=crypto values ("<tag> <suite> inline:...").
	Crypto []string
	// DTLS is set when the m= line asks for DTLS-SRTP: a UDP/TLS
	// transport or an a=fingerprint.
	DTLS bool
	// Fingerprint is the peer's certificate fingerprint, normalised
	// ("sha-256 AB:CD:..."), and Setup its a=setup role (actpass, active,
	// passive, holdconn; "": none); both from the session level when the
	// m= line has none (RFC 8122 section 5).
	Fingerprint, Setup string
	// ICEUfrag and ICEPwd are the peer's ICE credentials (m= line or
	// session level); ICEPwd is secret.
	ICEUfrag, ICEPwd string
	// TLSID is the peer's a=tls-id (RFC 8842): a new value asks for a new
	// DTLS association.
	TLSID string
	// Mid is the a=mid identification tag (RFC 5888); Bundled reports that
	// it is in the session's a=group:BUNDLE (RFC 8843); BundleOnly that
	// the m= line has port 0 and a=bundle-only: it is only usable on the
	// bundle's transport (RFC 8843 section 6).
	Mid                 string
	Bundled, BundleOnly bool
	// PTs are the RTP payload types of the m= line's formats; SSRCs the
	// sources its a=ssrc lines announce (RFC 5576).
	PTs   []uint8
	SSRCs []uint32
}

// SDP is a parsed SDP body with its media lines. Rewrite changes it in
// place. Not safe for concurrent use.
type SDP struct {
	sd    sdp.SessionDescription
	Media []Media
	// Bundle are the mids of the first a=group:BUNDLE, in order.
	Bundle []string
}

// ParseSDP parses an SDP body (CRLF or LF line ends) and checks the limits
// and the addresses.
func ParseSDP(b []byte) (*SDP, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrSDP)
	}
	if len(b) > MaxSDP {
		return nil, fmt.Errorf("%w: %d bytes (at most %d)", ErrSDP, len(b), MaxSDP)
	}
	if n := strings.Count(string(b), "\nm="); n > MaxMedia {
		return nil, fmt.Errorf("%w: more than %d m= lines", ErrSDP, MaxMedia)
	}
	if n := strings.Count(string(b), "\na="); n > MaxAttributes {
		return nil, fmt.Errorf("%w: more than %d a= lines", ErrSDP, MaxAttributes)
	}
	if !bytes.HasPrefix(b, []byte("v=0\n")) && !bytes.HasPrefix(b, []byte("v=0\r\n")) {
		return nil, fmt.Errorf("%w: does not start with v=0", ErrSDP)
	}
	s := &SDP{}
	if err := s.sd.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSDP, err)
	}
	if o := s.sd.Origin; o.NetworkType != "IN" || o.UnicastAddress == "" || o.Username == "" {
		return nil, fmt.Errorf("%w: o= line is not \"<user> <id> <version> IN IP4|IP6 <address>\"", ErrSDP)
	}
	var sessAddr netip.Addr
	if c := s.sd.ConnectionInformation; c != nil {
		a, err := connAddr(c)
		if err != nil {
			return nil, err
		}
		sessAddr = a
	}
	sess, err := sessionWebRTC(&s.sd)
	if err != nil {
		return nil, err
	}
	s.Bundle = sess.bundle
	for i, md := range s.sd.MediaDescriptions {
		m := Media{Type: md.MediaName.Media, Proto: strings.Join(md.MediaName.Protos, "/"), Port: md.MediaName.Port.Value, Addr: sessAddr}
		if md.MediaName.Port.Range != nil && *md.MediaName.Port.Range != 1 {
			return nil, fmt.Errorf("%w: m= line %d: port ranges are not supported", ErrSDP, i+1)
		}
		if m.Port < 0 || m.Port > 65535 {
			return nil, fmt.Errorf("%w: m= line %d: port %d", ErrSDP, i+1, m.Port)
		}
		if c := md.ConnectionInformation; c != nil {
			a, err := connAddr(c)
			if err != nil {
				return nil, err
			}
			m.Addr = a
		}
		if m.Port != 0 && !m.Addr.IsValid() {
			return nil, fmt.Errorf("%w: m= line %d has no connection address", ErrSDP, i+1)
		}
		m.RTCPPort = m.Port + 1
		for _, a := range md.Attributes {
			switch a.Key {
			case "rtcp-mux":
				m.Mux = true
			case "rtcp":
				f, _, _ := strings.Cut(a.Value, " ")
				p, err := strconv.Atoi(f)
				if err != nil || p < 1 || p > 65535 {
					return nil, fmt.Errorf("%w: m= line %d: a=rtcp:%s", ErrSDP, i+1, clip(a.Value))
				}
				m.RTCPPort = p
			case "crypto":
				if len(m.Crypto) >= MaxCrypto {
					return nil, fmt.Errorf("%w: m= line %d: more than %d a=crypto lines", ErrSDP, i+1, MaxCrypto)
				}
				m.Crypto = append(m.Crypto, a.Value)
			}
		}
		if err := mediaWebRTC(&m, md, &sess); err != nil {
			return nil, fmt.Errorf("%w: m= line %d: %w", ErrSDP, i+1, err)
		}
		if strings.HasPrefix(m.Proto, "UDP/TLS/") || m.Fingerprint != "" {
			m.DTLS = true
		}
		s.Media = append(s.Media, m)
	}
	return s, nil
}

func connAddr(c *sdp.ConnectionInformation) (netip.Addr, error) {
	if c.NetworkType != "IN" || c.Address == nil {
		return netip.Addr{}, fmt.Errorf("%w: c= line is not \"IN IP4|IP6 <address>\"", ErrSDP)
	}
	a, err := netip.ParseAddr(c.Address.Address)
	if err != nil || a.Zone() != "" || a.IsMulticast() {
		return netip.Addr{}, fmt.Errorf("%w: c= address %q is not a unicast IP address", ErrSDP, clip(c.Address.Address))
	}
	a = a.Unmap()
	if (c.AddressType == "IP4") != a.Is4() {
		return netip.Addr{}, fmt.Errorf("%w: c= address %q does not match %s", ErrSDP, clip(c.Address.Address), clip(c.AddressType))
	}
	return a, nil
}

// MediaPlan says how one m= line is rewritten for the endpoint that will
// receive the SDP.
type MediaPlan struct {
	// Addr, Port and RTCPPort are the relay's sockets for that endpoint.
	// Port 0 leaves the m= line disabled.
	Addr           netip.Addr
	Port, RTCPPort int
	// Proto replaces the transport protocol ("": unchanged).
	Proto string
	// Mux writes a=rtcp-mux; MuxOnly leaves out the separate RTCP port.
	Mux, MuxOnly bool
	// Crypto are the a=crypto values to write in place of the sender's.
	Crypto []string
	// ICEUfrag and ICEPwd, when set, make the relay an ICE-lite agent on
	// this m= line: a=ice-ufrag, a=ice-pwd and one host candidate per
	// component (RTP, and RTCP unless MuxOnly).
	ICEUfrag, ICEPwd string
	// Fingerprint, when set, makes the m= line DTLS-SRTP: the relay's
	// certificate fingerprint ("sha-256 AB:CD:...") and its a=setup role
	// (Setup). No a=crypto is written with it unless Crypto is set too.
	Fingerprint, Setup string
	// Mid replaces the m= line's a=mid ("": as the sender wrote it).
	Mid string
}

// Options are the SDP-wide rewriting options.
type Options struct {
	// ReplaceOrigin puts the relay's address in the o= line.
	ReplaceOrigin bool
	// OriginAddr is that address (the first media plan's when invalid).
	OriginAddr netip.Addr
	// Bundle are the mids of the a=group:BUNDLE to write (RFC 8843);
	// nil: none, and the sender's group is removed.
	Bundle []string
}

// candidate formats a host candidate (RFC 8445 section 5.1.2.1: type
// preference 126, local preference 65535).
func candidate(component int, a netip.Addr, port int) string {
	prio := 126<<24 | 65535<<8 | (256 - component)
	return fmt.Sprintf("%d %d UDP %d %s %d typ host", component, component, prio, a, port)
}

// stripped are the attributes the relay removes: ICE (it is not an ICE
// agent on the sender's behalf), DTLS (it terminates SRTP with SDES), and
// the ones it rewrites.
var stripped = map[string]bool{
	"crypto": true, "rtcp": true, "rtcp-mux": true,
	"candidate": true, "ice-ufrag": true, "ice-pwd": true, "ice-options": true, "ice-lite": true,
	"ice-mismatch": true, "remote-candidates": true, "end-of-candidates": true,
	"fingerprint": true, "setup": true, "tls-id": true, "bundle-only": true,
}

// Rewrite applies one plan per m= line and returns the new body with CRLF
// line ends. Codecs, directions and every other attribute pass through.
func (s *SDP) Rewrite(plans []MediaPlan, o Options) ([]byte, error) {
	if len(plans) != len(s.sd.MediaDescriptions) {
		return nil, fmt.Errorf("ng: %d media plans for %d m= lines", len(plans), len(s.sd.MediaDescriptions))
	}
	var first netip.Addr
	for _, p := range plans {
		if p.Port != 0 {
			first = p.Addr
			break
		}
	}
	if o.ReplaceOrigin {
		a := o.OriginAddr
		if !a.IsValid() {
			a = first
		}
		if a.IsValid() {
			s.sd.Origin.AddressType, s.sd.Origin.UnicastAddress = addrType(a), a.String()
		}
	}
	if s.sd.ConnectionInformation != nil && first.IsValid() {
		s.sd.ConnectionInformation = conn(first)
	}
	s.sd.Attributes = filter(s.sd.Attributes)
	if len(o.Bundle) > 0 {
		g := sdp.Attribute{Key: "group", Value: "BUNDLE " + strings.Join(o.Bundle, " ")}
		s.sd.Attributes = append([]sdp.Attribute{g}, s.sd.Attributes...)
	}
	for _, p := range plans {
		if p.ICEUfrag != "" {
			s.sd.Attributes = append(s.sd.Attributes, sdp.Attribute{Key: "ice-lite"})
			break
		}
	}
	for i := range s.sd.MediaDescriptions {
		md, p := s.sd.MediaDescriptions[i], plans[i]
		if p.Port == 0 {
			md.MediaName.Port = sdp.RangedPort{Value: 0}
			continue
		}
		md.MediaName.Port = sdp.RangedPort{Value: p.Port}
		if p.Proto != "" {
			md.MediaName.Protos = strings.Split(p.Proto, "/")
		}
		if md.ConnectionInformation != nil || s.sd.ConnectionInformation == nil || p.Addr != first {
			md.ConnectionInformation = conn(p.Addr)
		}
		md.Attributes = filter(md.Attributes)
		if p.Mid != "" {
			md.Attributes = setMid(md.Attributes, p.Mid)
		}
		if !p.MuxOnly {
			md.Attributes = append(md.Attributes, sdp.Attribute{Key: "rtcp", Value: strconv.Itoa(p.RTCPPort)})
		}
		if p.Mux || p.MuxOnly {
			md.Attributes = append(md.Attributes, sdp.Attribute{Key: "rtcp-mux"})
		}
		for _, c := range p.Crypto {
			md.Attributes = append(md.Attributes, sdp.Attribute{Key: "crypto", Value: c})
		}
		if p.ICEUfrag != "" {
			md.Attributes = append(md.Attributes, sdp.Attribute{Key: "ice-ufrag", Value: p.ICEUfrag},
				sdp.Attribute{Key: "ice-pwd", Value: p.ICEPwd},
				sdp.Attribute{Key: "candidate", Value: candidate(1, p.Addr, p.Port)})
			if !p.MuxOnly && p.RTCPPort != p.Port {
				md.Attributes = append(md.Attributes, sdp.Attribute{Key: "candidate", Value: candidate(2, p.Addr, p.RTCPPort)})
			}
			md.Attributes = append(md.Attributes, sdp.Attribute{Key: "end-of-candidates"})
		}
		if p.Fingerprint != "" {
			md.Attributes = append(md.Attributes, sdp.Attribute{Key: "fingerprint", Value: p.Fingerprint},
				sdp.Attribute{Key: "setup", Value: p.Setup})
		}
	}
	b, err := s.sd.Marshal()
	if err != nil {
		return nil, fmt.Errorf("%w: formatting: %w", ErrSDP, err)
	}
	return b, nil
}

func filter(as []sdp.Attribute) []sdp.Attribute {
	out := as[:0]
	for _, a := range as {
		if !stripped[a.Key] && !isBundleGroup(a) {
			out = append(out, a)
		}
	}
	return out
}

func addrType(a netip.Addr) string {
	if a.Is4() {
		return "IP4"
	}
	return "IP6"
}

func conn(a netip.Addr) *sdp.ConnectionInformation {
	return &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType(a), Address: &sdp.Address{Address: a.String()}}
}
