package gateway

import (
	"slices"

	"github.com/mediaedge/mediaedge/gateway/ng"
)

// forkAnswer runs an answer with a to-tag the answered call c has not
// carried media for yet: an INVITE forked by the proxy after one offer
// and answered by several user agents (183 with early media from one,
// 200 from another, or two 200s). Every answerer was sent the same offer:
// the gateway's ports and keys toward the answerers, so all of them send
// to the same ports, and those ports can carry one answerer at a time.
// As rtpengine does with an unseen to-tag (since 13.1; before, a
// party of its own per to-tag, on ports the later answerers were never
// told), the latest answer wins the media: the leg toward the answerers takes this answerer's address and
// key (the previous answerer's key is still accepted for rekey_grace),
// the gateway's ports and keys toward both sides stay, and the SDP
// toward the offerer is the one it already has. The to-tag that carried
// the media before is remembered (a delete naming it ends only that
// branch); an answer from it later takes the media back. Locked: s.mu
// is held.
func (s *ngServer) forkAnswer(c *ngCall, toTag string, f *ngFlags, body *ng.SDP) ([]byte, error) {
	if len(body.Media) != len(c.streams) {
		return nil, refuse("the answer has %d m= lines, the offer %d", len(body.Media), len(c.streams))
	}
	// What the ports toward the answerers were set up with cannot change
	// (rtcp-mux, the suite of the gateway's key toward them): a forked
	// answer must agree with the first.
	for i, st := range c.streams {
		if st.disabled {
			continue
		}
		m, n := body.Media[i], i+1
		switch {
		case m.Port == 0:
			return nil, refuse("m= line %d: a forked answer may not disable a stream an earlier answer took", n)
		case (st.muxOnly || (st.muxOffered && m.Mux)) != st.mux[1]:
			return nil, refuse("m= line %d: a forked answer must agree with the first on rtcp-mux", n)
		case !st.plain[1] && !hasSuite(m.Crypto, st.own[1].suite):
			return nil, refuse("m= line %d: a forked answer must accept the suite an earlier answer took (%s)", n, st.own[1].suite.Name)
		}
	}
	prev := c.tags[1]
	c.tags[1] = toTag
	out, err := s.update(c, "answer", c.tags[0], toTag, f, body)
	if err != nil {
		c.tags[1] = prev
		return nil, err
	}
	c.others = append(slices.DeleteFunc(c.others, func(t string) bool { return t == toTag }), prev)
	ngRetag(c)
	return out, nil
}

// hasSuite reports whether one of the a=crypto values lines is of suite su.
func hasSuite(lines []string, su *Suite) bool {
	for _, line := range lines {
		if cr, err := ParseCrypto(line); err == nil {
			ok := cr.Suite == su
			cr.Wipe()
			if ok {
				return true
			}
		}
	}
	return false
}

// hasTag reports whether tag is one of c's: the offerer's, the answerer's
// carrying the media, or an earlier answerer's of a forked INVITE.
func (c *ngCall) hasTag(tag string) bool {
	return tag == c.tags[0] || tag == c.tags[1] || slices.Contains(c.others, tag)
}

// dropOther ends the branch of an earlier answerer of a forked INVITE
// named by a delete's from-tag or to-tag (its BYE, or the proxy's CANCEL
// of it): the call and its media go on with the current answerer. It
// reports whether one was named. Locked: s.mu is held.
func (c *ngCall) dropOther(tags ...string) bool {
	for _, tag := range tags {
		if tag != "" && slices.Contains(c.others, tag) {
			c.others = slices.DeleteFunc(c.others, func(t string) bool { return t == tag })
			ngRetag(c)
			return true
		}
	}
	return false
}
