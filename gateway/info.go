package gateway

import (
	"net/netip"
	"sort"
	"time"
)

// SessionInfo is a session as the control API shows it.
type SessionInfo struct {
	ID       string    `json:"id"`
	Created  time.Time `json:"created"`
	Internal LegInfo   `json:"internal"`
	Cloud    LegInfo   `json:"cloud"`
	// Counters are both legs' counters added up.
	Counters legCounters `json:"counters"`
	// LastPacket is the time of the last authenticated packet on either
	// leg; null before the first.
	LastPacket *time.Time `json:"last_packet"`
	// NG names the ng call of a session set up by a SIP proxy; absent
	// for sessions made over the control API.
	NG *NGInfo `json:"ng,omitempty"`
}

// LegInfo is one leg as the control API shows it.
type LegInfo struct {
	// Local is where the peer sends RTP (and RTCP with rtcp-mux);
	// LocalRTCP where it sends RTCP.
	Local     string `json:"local"`
	LocalRTCP string `json:"local_rtcp"`
	// Remote and RemoteRTCP are where the gateway sends; "" until given
	// or latched.
	Remote     string   `json:"remote"`
	RemoteRTCP string   `json:"remote_rtcp"`
	RTCPMux    bool     `json:"rtcp_mux"`
	Latched    bool     `json:"latched"`
	PortMode   PortMode `json:"port_mode"`
	// Crypto is the gateway's own a=crypto line for this leg, which the
	// peer decrypts with. Only in the answers to create and rekey.
	Crypto string `json:"crypto,omitempty"`
	// Suite is the gateway's suite on this leg, PeerSuite the peer's;
	// both "" on a plain RTP leg.
	Suite     string `json:"suite"`
	PeerSuite string `json:"peer_suite"`
	// KeyEpoch numbers the gateway's keys on this leg (1 = the first);
	// NextKeyEpoch is an announced key not yet in use.
	KeyEpoch     uint32 `json:"key_epoch"`
	NextKeyEpoch uint32 `json:"next_key_epoch,omitempty"`
	PeerKeyEpoch uint32 `json:"peer_key_epoch"`
	// KeyPackets counts the SRTP packets protected with the current key;
	// KeyLifetime is its budget (0: none).
	KeyPackets  uint64 `json:"key_packets"`
	KeyLifetime uint64 `json:"key_lifetime,omitempty"`
	// ROC is the highest rollover counter of the leg's outbound streams.
	ROC     uint32       `json:"roc"`
	Streams []StreamInfo `json:"streams"`
	// Counters: packets_in counts authenticated packets from the peer,
	// packets_out packets handed to the kernel for the peer.
	Counters   legCounters `json:"counters"`
	LastPacket *time.Time  `json:"last_packet"`
	// Keying is sdes, dtls, or "" on a plain RTP leg.
	Keying string `json:"keying"`
	// DTLS is the DTLS state of a DTLS leg: the gateway's fingerprint,
	// role and ICE-lite description for its SDP, the handshake's state,
	// profile and the peer's fingerprint.
	DTLS *DTLSInfo `json:"dtls,omitempty"`
}

// StreamInfo is one SSRC seen on a leg.
type StreamInfo struct {
	SSRC      uint32 `json:"ssrc"`
	Direction string `json:"direction"` // "in" from the peer, "out" to it
	ROC       uint32 `json:"roc"`
}

// snapshot describes s; with keys it includes the gateway's a=crypto
// lines. Runs on s's worker.
func (w *worker) snapshot(s *session, keys bool) SessionInfo {
	info := SessionInfo{ID: s.id, Created: s.created, NG: s.ng.Load()}
	var last time.Time
	for id := range s.legs {
		l := &s.legs[id]
		li := LegInfo{
			RTCPMux:  l.mux,
			Latched:  l.latched,
			PortMode: legConfig(w.cfg, l.id).PortMode,
			Counters: l.c,
			Streams:  []StreamInfo{},
		}
		// t is the leg whose socket, remote and keying l uses: a leg
		// bundled behind another shows its transport's (ngbundle.go).
		t := l.transport()
		switch {
		case t.dtls != nil:
			li.Keying = KeyingDTLS
			li.DTLS = w.dtlsInfo(t, keys)
		case !l.plain:
			li.Keying = KeyingSDES
		}
		if t.rtp != nil {
			li.Local = t.rtp.local.String()
			li.LocalRTCP = t.rtcp.local.String()
		}
		li.Remote = addrString(t.remote)
		li.RemoteRTCP = addrString(t.remoteRTCP)
		if !li.RTCPMux && l.remoteRTCP == (netip.AddrPort{}) && l.remote.IsValid() {
			li.RemoteRTCP = netip.AddrPortFrom(l.remote.Addr(), l.remote.Port()+1).String()
		}
		if len(l.in) > 0 {
			li.PeerSuite = l.in[0].suite.Name
			li.PeerKeyEpoch = l.inEpoch
			for _, e := range l.inSSRC.e {
				st := StreamInfo{SSRC: e.ssrc, Direction: "in"}
				for _, k := range l.in {
					if k.ctx != nil {
						if roc, ok := k.ctx.ROC(e.ssrc); ok {
							st.ROC = max(st.ROC, roc)
						}
					}
				}
				li.Streams = append(li.Streams, st)
			}
		}
		if k := l.out; k != nil {
			li.Suite = k.suite.Name
			li.KeyEpoch = k.epoch
			li.KeyPackets = k.rtp
			li.KeyLifetime = k.lifetime
			if keys {
				li.Crypto = k.crypto().String()
			}
			for _, e := range l.outSSRC.e {
				st := StreamInfo{SSRC: e.ssrc, Direction: "out"}
				if k.ctx != nil {
					st.ROC, _ = k.ctx.ROC(e.ssrc)
				}
				li.ROC = max(li.ROC, st.ROC)
				li.Streams = append(li.Streams, st)
			}
		}
		if l.next != nil {
			li.NextKeyEpoch = l.next.epoch
		}
		if !l.lastPacket.IsZero() {
			t := l.lastPacket
			li.LastPacket = &t
			if t.After(last) {
				last = t
			}
		}
		info.Counters.add(l.c)
		if l.id == legInternal {
			info.Internal = li
		} else {
			info.Cloud = li
		}
	}
	if !last.IsZero() {
		info.LastPacket = &last
	}
	return info
}

func addrString(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func sortInfos(infos []SessionInfo) {
	sort.Slice(infos, func(i, j int) bool {
		if !infos[i].Created.Equal(infos[j].Created) {
			return infos[i].Created.Before(infos[j].Created)
		}
		return infos[i].ID < infos[j].ID
	})
}
