package sut

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/mediaedge/mediaedge/bench/load"
	"github.com/mediaedge/mediaedge/bench/srtpcheck"
)

// NGClient speaks rtpengine's ng control protocol: one UDP datagram
// "<cookie> <bencoded dictionary>" per request, the reply carrying the same
// cookie. Not safe for concurrent use.
type NGClient struct {
	conn   *net.UDPConn
	prefix string
	n      int
	buf    []byte
}

// DialNG connects to an ng listener.
func DialNG(addr netip.AddrPort) (*NGClient, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("sut: ng: %w", err)
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	return &NGClient{conn: c, prefix: hex.EncodeToString(r[:]), buf: make([]byte, 65536)}, nil
}

// Close closes the client's socket.
func (c *NGClient) Close() error { return c.conn.Close() }

// Call sends msg and returns the reply dictionary. Lost datagrams are
// retried three times, a second apart; replies to earlier tries are
// skipped by cookie. A reply whose result is not "ok" (or "pong") is an
// error carrying rtpengine's reason.
func (c *NGClient) Call(ctx context.Context, msg map[string]any) (map[string]any, error) {
	c.n++
	cookie := c.prefix + "_" + strconv.Itoa(c.n)
	body, err := bencode(msg)
	if err != nil {
		return nil, err
	}
	pkt := append([]byte(cookie+" "), body...)
	for try := 0; try < 3; try++ {
		if _, err := c.conn.Write(pkt); err != nil {
			return nil, fmt.Errorf("sut: ng: %w", err)
		}
		deadline := time.Now().Add(time.Second)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = c.conn.SetReadDeadline(deadline)
		for {
			n, err := c.conn.Read(c.buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
					break
				}
				return nil, fmt.Errorf("sut: ng %v: %w", msg["command"], err)
			}
			ck, rest, ok := bytes.Cut(c.buf[:n], []byte(" "))
			if !ok || string(ck) != cookie {
				continue
			}
			v, err := bdecode(rest)
			if err != nil {
				return nil, fmt.Errorf("sut: ng reply: %w", err)
			}
			d, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%w: ng reply is not a dictionary", errBencode)
			}
			if r, _ := d["result"].(string); r != "ok" && r != "pong" {
				reason, _ := d["error-reason"].(string)
				return d, fmt.Errorf("sut: ng %v: %s %s", msg["command"], r, reason)
			}
			return d, nil
		}
	}
	return nil, fmt.Errorf("sut: ng %v: no reply", msg["command"])
}

// sdpMedia is what bench needs from an SDP body.
type sdpMedia struct {
	addr    netip.Addr
	port    uint16
	cryptos []srtpcheck.Key
}

func parseSDP(sdp string) (sdpMedia, error) {
	var m sdpMedia
	for _, ln := range strings.Split(strings.ReplaceAll(sdp, "\r\n", "\n"), "\n") {
		ln = strings.TrimSpace(ln)
		switch {
		case strings.HasPrefix(ln, "c=IN IP"):
			f := strings.Fields(ln)
			a, err := netip.ParseAddr(f[len(f)-1])
			if err != nil {
				return m, fmt.Errorf("sut: SDP connection line %q: %w", ln, err)
			}
			m.addr = a
		case strings.HasPrefix(ln, "m=audio "):
			f := strings.Fields(ln)
			p, err := strconv.ParseUint(f[1], 10, 16)
			if err != nil {
				return m, fmt.Errorf("sut: SDP media line %q: %w", ln, err)
			}
			m.port = uint16(p)
		case strings.HasPrefix(ln, "a=crypto:"):
			if k, err := srtpcheck.ParseCryptoLine(ln); err == nil {
				m.cryptos = append(m.cryptos, k)
			}
		}
	}
	if !m.addr.IsValid() || m.port == 0 {
		return m, errors.New("sut: SDP without connection address or audio port")
	}
	return m, nil
}

func makeSDP(addr netip.AddrPort, k srtpcheck.Key) string {
	fam := "IP4"
	if addr.Addr().Is6() {
		fam = "IP6"
	}
	return strings.Join([]string{"v=0", fmt.Sprintf("o=- 1 1 IN %s %s", fam, addr.Addr()), "s=mediaedge-bench",
		fmt.Sprintf("c=IN %s %s", fam, addr.Addr()), "t=0 0", fmt.Sprintf("m=audio %d RTP/SAVP 0", addr.Port()),
		"a=rtpmap:0 PCMU/8000", k.CryptoLine(), "a=sendrecv", ""}, "\r\n")
}

// RtpengineSetup describes the calls bench sets up through ng.
type RtpengineSetup struct {
	Calls int
	// A and B are bench's sockets for the two legs.
	A, B netip.AddrPort
	// BSuite is the suite leg B accepts from rtpengine's offer. rtpengine
	// 10.5 re-keys only when it differs from leg A's suite
	// (AES_CM_128_HMAC_SHA1_80); with the same suite it passes SRTP
	// through untouched.
	BSuite string
}

// RtpengineCalls are calls set up on rtpengine; Close deletes them.
type RtpengineCalls struct {
	ng    *NGClient
	ids   []string
	Flows []load.Flow
}

// SetupRtpengine offers and answers Calls calls, each with four distinct
// keys, and returns the flows: A encrypts with key A towards rtpengine's
// A-facing port, B decrypts with rtpengine's key towards B, and reverse.
func SetupRtpengine(ctx context.Context, ng *NGClient, s RtpengineSetup) (*RtpengineCalls, error) {
	a80, _ := srtpcheck.LookupSuite("AES_CM_128_HMAC_SHA1_80")
	if s.BSuite == "" {
		s.BSuite = "AES_CM_128_HMAC_SHA1_32"
	}
	bs, err := srtpcheck.LookupSuite(s.BSuite)
	if err != nil {
		return nil, err
	}
	rc := &RtpengineCalls{ng: ng}
	var r [4]byte
	_, _ = rand.Read(r[:])
	for i := 0; i < s.Calls; i++ {
		id := fmt.Sprintf("mediaedge-bench-%x-%d", r, i)
		kA, _ := srtpcheck.NewKey(a80)
		offer, err := ng.Call(ctx, map[string]any{"command": "offer", "call-id": id, "from-tag": "a" + strconv.Itoa(i),
			"sdp": makeSDP(s.A, kA), "transport-protocol": "RTP/SAVP", "replace": []string{"origin", "session-connection"}})
		if err != nil {
			rc.Close(ctx)
			return nil, err
		}
		rc.ids = append(rc.ids, id)
		toB, err := parseSDP(str(offer["sdp"]))
		if err != nil {
			rc.Close(ctx)
			return nil, err
		}
		var kRB *srtpcheck.Key
		for j := range toB.cryptos {
			if toB.cryptos[j].Suite.Name == bs.Name {
				kRB = &toB.cryptos[j]
				break
			}
		}
		if kRB == nil {
			rc.Close(ctx)
			return nil, fmt.Errorf("sut: rtpengine offered no %s", bs.Name)
		}
		kB, _ := srtpcheck.NewKey(bs)
		kB.Tag = kRB.Tag
		answer, err := ng.Call(ctx, map[string]any{"command": "answer", "call-id": id, "from-tag": "a" + strconv.Itoa(i),
			"to-tag": "b" + strconv.Itoa(i), "sdp": makeSDP(s.B, kB), "transport-protocol": "RTP/SAVP",
			"replace": []string{"origin", "session-connection"}})
		if err != nil {
			rc.Close(ctx)
			return nil, err
		}
		toA, err := parseSDP(str(answer["sdp"]))
		if err != nil || len(toA.cryptos) == 0 {
			rc.Close(ctx)
			return nil, fmt.Errorf("sut: rtpengine answer without a key: %w", err)
		}
		rc.Flows = append(rc.Flows,
			load.Flow{Direction: "internal->cloud", TxKey: kA, RxKey: *kRB, Src: s.A.String(),
				Target: netip.AddrPortFrom(toA.addr, toA.port), Recv: s.B.String()},
			load.Flow{Direction: "cloud->internal", TxKey: kB, RxKey: toA.cryptos[0], Src: s.B.String(),
				Target: netip.AddrPortFrom(toB.addr, toB.port), Recv: s.A.String()})
	}
	return rc, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// Close deletes the calls.
func (rc *RtpengineCalls) Close(ctx context.Context) {
	for i, id := range rc.ids {
		_, _ = rc.ng.Call(ctx, map[string]any{"command": "delete", "call-id": id, "from-tag": "a" + strconv.Itoa(i)})
	}
	rc.ids = nil
}
