package ngcall

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediaedge/mediaedge/gateway/ng"
	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/testutil"
)

// TestNGTCPFramingAsRtpengine holds mediaedge's ng over TCP
// (gateway.ng.listen_tcp) to rtpengine's (--listen-tcp-ng, Debian
// rtpengine-daemon): the same byte stream (a ping, an offer and a list
// back to back in one write, then a ping cut into pieces of 5 bytes)
// sent to each gets the same replies framed the same way: a cookie, a
// space and one bencoded dictionary each, found by ng.FrameLen with no
// bytes between or after them. mediaedge replies in the order of the
// requests; rtpengine 10.5 runs the requests of one connection
// concurrently and may not (seen here: a delete sent after an offer
// answered first, "Call-ID to delete not found"), so its replies are
// matched by cookie.
func TestNGTCPFramingAsRtpengine(t *testing.T) {
	base := 24000 + 200*(os.Getpid()%20)
	sdp := strings.Join([]string{"v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
		fmt.Sprintf("m=audio %d RTP/AVP 0", base+100), "a=rtpmap:0 PCMU/8000", ""}, "\r\n")
	msg := func(cookie string, d map[string]any) []byte {
		b, err := ng.Reply(cookie, d)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var stream []byte
	stream = append(stream, msg("c_1", map[string]any{"command": "ping"})...)
	stream = append(stream, msg("c_2", map[string]any{"command": "offer", "call-id": "tcp-framing", "from-tag": "a", "sdp": sdp,
		"replace": []any{"origin", "session-connection"}})...)
	stream = append(stream, msg("c_3", map[string]any{"command": "list"})...)
	cut := msg("c_4", map[string]any{"command": "ping"})

	run := func(t *testing.T, addr netip.AddrPort, inOrder bool) {
		c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(addr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(stream); err != nil {
			t.Fatal(err)
		}
		for p := cut; len(p) > 0; p = p[min(5, len(p)):] {
			if _, err := c.Write(p[:min(5, len(p))]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		want := map[string]string{"c_1": "pong", "c_2": "ok", "c_3": "ok", "c_4": "pong"}
		var got []string
		var buf []byte
		rd := make([]byte, 4096)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for i := 0; i < len(want); {
			l, err := ng.FrameLen(buf)
			if err != nil {
				t.Fatalf("reply stream after %d replies: %v: %q", i, err, buf)
			}
			if l == 0 {
				n, err := c.Read(rd)
				if err != nil {
					t.Fatalf("after %d replies: %v", i, err)
				}
				buf = append(buf, rd[:n]...)
				continue
			}
			cookie, body, ok := ng.SplitCookie(buf[:l])
			if !ok {
				t.Fatalf("reply %d has no cookie: %q", i+1, buf[:l])
			}
			d, err := ng.DecodeRequest(bytes.Clone(body))
			if err != nil {
				t.Fatalf("reply %d: %v", i+1, err)
			}
			if r, ok := want[cookie]; !ok || d.Str("result") != r || slices.Contains(got, cookie) {
				t.Fatalf("reply %d: cookie %q result %q (%s); want one of each of %v", i+1, cookie, d.Str("result"), d.Str("error-reason"), want)
			}
			got = append(got, cookie)
			buf = buf[l:]
			i++
		}
		if inOrder && !slices.IsSorted(got) {
			t.Errorf("replies in the order %v", got)
		}
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, _ := c.Read(rd); n > 0 || len(buf) > 0 {
			t.Fatalf("bytes after the last reply: %q", append(buf, rd[:n]...))
		}
	}
	t.Run("mediaedge", func(t *testing.T) {
		cfg := ngConfig()
		cfg.NG.ListenTCP = "127.0.0.1:0"
		cfg.Internal.AllowPlain, cfg.Cloud.AllowPlain = true, true
		cfg.Internal.Ports = config.PortRange{Min: uint16(base), Max: uint16(base + 49)}
		cfg.Cloud.Ports = config.PortRange{Min: uint16(base + 50), Max: uint16(base + 99)}
		g := startGateway(t, cfg)
		run(t, g.NGTCPAddr(), true)
	})
	t.Run("rtpengine", func(t *testing.T) {
		if _, err := exec.LookPath("rtpengine"); err != nil {
			t.Skip("rtpengine is not installed (Debian package rtpengine-daemon)")
		}
		// Ports in this test's block: nobody's ephemeral port can take them.
		tcpAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(base+196))
		udpAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(base+197))
		startProc(t, t.TempDir(), "rtpengine", "--config-file=none", "--table=-1", "--foreground", "--log-stderr",
			"--interface=127.0.0.1", "--listen-ng="+udpAddr.String(), "--listen-tcp-ng="+tcpAddr.String(),
			fmt.Sprintf("--port-min=%d", base), fmt.Sprintf("--port-max=%d", base+99), "--delete-delay=0")
		testutil.WaitFor(t, "rtpengine's ng listener to answer ping", 10*time.Second, func() bool { return ngPing(udpAddr) })
		run(t, tcpAddr, false)
	})
}
