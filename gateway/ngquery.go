package gateway

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mediaedge/mediaedge/gateway/ng"
)

// maxDeleteDelay bounds the delete-delay a request may ask for.
const maxDeleteDelay = time.Hour

// deleteCall ends a call, at once or after delete-delay seconds, and
// answers with its statistics. Locked: s.mu is held.
func (s *ngServer) deleteCall(req ng.Dict, now time.Time) map[string]any {
	c, errReply := s.findCall(req)
	if errReply != nil {
		return errReply
	}
	reply := s.callStats(c)
	delay, _ := req.Int("delete-delay")
	if delay < 0 || time.Duration(delay)*time.Second > maxDeleteDelay {
		return ng.ErrorReply("delete-delay: want 0 to 3600 seconds")
	}
	s.totals.deletes++
	cs := []*ngCall{c}
	if req.Str("via-branch") == "" && req.Str("to-tag") == "" {
		cs = s.branches(c.id) // the whole call: every fork of it too
	}
	for _, c := range cs {
		if delay == 0 {
			s.forgetLocked(c)
		} else if c.deleteAt.IsZero() {
			c.deleteAt = now.Add(time.Duration(delay) * time.Second)
		}
	}
	return reply
}

// findCall returns the call of a request's call-id whose tags match the
// from-tag (and to-tag) when given.
func (s *ngServer) findCall(req ng.Dict) (*ngCall, map[string]any) {
	id := req.Str("call-id")
	if id == "" {
		return nil, ng.ErrorReply("no call-id")
	}
	cs := s.branches(id)
	if len(cs) == 0 {
		return nil, ng.ErrorReply("Unknown call-id")
	}
	if via := req.Str("via-branch"); via != "" && len(cs) > 1 {
		// The branch of that via-branch first.
		slices.SortStableFunc(cs, func(a, b *ngCall) int {
			return cmpBool(b.viaBranch == via, a.viaBranch == via)
		})
	}
next:
	for _, c := range cs {
		for _, tag := range []string{req.Str("from-tag"), req.Str("to-tag")} {
			if tag != "" && tag != c.tags[0] && tag != c.tags[1] {
				continue next
			}
		}
		return c, nil
	}
	return nil, ng.ErrorReply("Unknown tag for this call")
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// query answers with a call's statistics.
func (s *ngServer) query(req ng.Dict) map[string]any {
	c, errReply := s.findCall(req)
	if errReply != nil {
		return errReply
	}
	return s.callStats(c)
}

// callStats is rtpengine's statistics dictionary of a call: per tag the
// medias and their streams (local port, endpoint, crypto suite, packets
// received from that endpoint), and the totals.
func (s *ngServer) callStats(c *ngCall) map[string]any {
	var medias [2][]any
	var rtp, rtcp [3]uint64 // packets, bytes, errors
	for _, st := range c.streams {
		var info *SessionInfo
		if st.sid != "" {
			ctx, cancel := ngContext()
			info, _ = s.g.Session(ctx, st.sid)
			cancel()
		}
		for side := 0; side < 2; side++ {
			m := map[string]any{"index": st.index + 1, "type": st.typ, "protocol": st.proto[side]}
			stream := map[string]any{
				"endpoint": endpoint(st.remote[side]),
				"stats":    map[string]any{"packets": 0, "bytes": 0, "errors": 0},
			}
			if info != nil {
				li := info.Internal
				if c.legs[side] == legCloud {
					li = info.Cloud
				}
				lc := li.Counters
				errs := lc.AuthFailures + lc.Replays + lc.Malformed + lc.WrongSource
				stream["local port"] = portOf(li.Local)
				stream["crypto suite"] = li.PeerSuite
				stream["keying"] = keyingOf(li.Keying)
				if d := li.DTLS; d != nil {
					// mediaedge's own: the DTLS state of the leg (of the
					// BUNDLE's transport for a bundled m= line).
					stream["dtls"] = map[string]any{"state": d.State, "role": string(d.Setup), "profile": d.Profile,
						"fingerprint": d.Fingerprint.String(), "handshakes": int64(d.Handshakes)}
				}
				stream["stats"] = map[string]any{"packets": lc.PacketsIn, "bytes": lc.BytesIn, "errors": errs}
				m["interface"] = c.legs[side].String()
				rtp[0] += lc.PacketsIn
				rtp[1] += lc.BytesIn
				rtp[2] += errs
				rtcp[0] += lc.RTCPIn
			} else if so := st.socks[c.legs[side]]; so.rtp != nil {
				stream["local port"] = int64(so.rtp.local.Port())
			}
			if _, ok := stream["keying"]; !ok {
				stream["keying"] = st.keying(side)
			}
			if mid := st.mid[side]; mid != "" {
				m["mid"] = mid
			}
			m["streams"] = []any{stream}
			medias[side] = append(medias[side], m)
		}
	}
	tags := map[string]any{}
	for side := 0; side < 2; side++ {
		if c.tags[side] == "" {
			continue
		}
		tags[c.tags[side]] = map[string]any{
			"tag":              c.tags[side],
			"created":          c.created.Unix(),
			"in dialogue with": c.tags[1-side],
			"medias":           medias[side],
		}
	}
	return map[string]any{
		"result":      "ok",
		"created":     c.created.Unix(),
		"created_us":  int64(c.created.Nanosecond() / 1000),
		"last signal": c.lastSignal.Unix(),
		"tags":        tags,
		"totals": map[string]any{
			"RTP":  map[string]any{"packets": rtp[0], "bytes": rtp[1], "errors": rtp[2]},
			"RTCP": map[string]any{"packets": rtcp[0], "bytes": rtcp[1], "errors": rtcp[2]},
		},
	}
}

func endpoint(a netip.AddrPort) map[string]any {
	fam := "IPv4"
	if a.Addr().Is6() {
		fam = "IPv6"
	}
	return map[string]any{"family": fam, "address": a.Addr().String(), "port": int64(a.Port())}
}

func portOf(s string) int64 {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			var p int64
			for _, c := range s[i+1:] {
				p = p*10 + int64(c-'0')
			}
			return p
		}
	}
	return 0
}

// list answers with the call-ids, at most `limit` (default 32).
func (s *ngServer) list(req ng.Dict) map[string]any {
	limit, ok := req.Int("limit")
	if !ok || limit <= 0 {
		limit = 32
	}
	ids := make([]string, 0, len(s.calls))
	for key, c := range s.calls {
		if key == c.id || s.calls[c.id] == nil && s.forks[c.id][0] == key {
			ids = append(ids, c.id) // a call-id once, forks or not
		}
	}
	slices.Sort(ids)
	if int64(len(ids)) > limit {
		ids = ids[:limit]
	}
	// mediaedge's own, beside rtpengine's list: per call-id and tag the
	// keying of that side's streams (sdes, dtls, plain; joined with "+"
	// when its m= lines differ). The DTLS state is in query.
	keying := make(map[string]any, len(ids))
	for _, id := range ids {
		tags := map[string]any{}
		for _, c := range s.branches(id) {
			for side := 0; side < 2; side++ {
				if c.tags[side] == "" {
					continue
				}
				var ks []string
				for _, st := range c.streams {
					if k := st.keying(side); !st.disabled && !slices.Contains(ks, k) {
						ks = append(ks, k)
					}
				}
				tags[c.tags[side]] = strings.Join(ks, "+")
			}
		}
		keying[id] = tags
	}
	return map[string]any{"result": "ok", "calls": ids, "keying": keying}
}

// statistics answers with the counters rtpengine's statistics command
// has that mean something here.
func (s *ngServer) statistics() map[string]any {
	var own, answered int
	for _, c := range s.calls {
		own++
		if c.answered {
			answered++
		}
	}
	return map[string]any{
		"result": "ok",
		"statistics": map[string]any{
			"currentstatistics": map[string]any{
				"sessionsown":     own,
				"sessionsforeign": 0,
				"sessionstotal":   own,
				"transcodedmedia": 0,
			},
			"totalstatistics": map[string]any{
				"managedsessions": s.totals.calls,
				"offers":          s.totals.offers,
				"answers":         s.totals.answers,
				"deletes":         s.totals.deletes,
				"errors":          s.totals.errors,
			},
		},
	}
}

// anyAlive reports whether a session of c is among alive (an idle
// timeout may have ended them).
func (c *ngCall) anyAlive(alive map[string]bool) bool {
	for _, st := range c.streams {
		if st.sid != "" && alive[st.sid] {
			return true
		}
	}
	return false
}

// keyingOf names a LegInfo.Keying in query replies: plain for a leg
// without SRTP.
func keyingOf(k string) string {
	if k == "" {
		return "plain"
	}
	return k
}

// keying is side's keying as negotiated so far (before the answer: as
// offered).
func (st *ngStream) keying(side int) string {
	switch {
	case st.dtls[side]:
		return KeyingDTLS
	case st.plain[side]:
		return "plain"
	}
	return KeyingSDES
}
