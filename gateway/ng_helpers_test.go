package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pion/srtp/v3"

	"github.com/mediaedge/mediaedge/gateway/ng"
)

// ngKey is a test endpoint's SDES key in the gateway's own types (the
// gateway's tests may not import bench).
type ngKey struct {
	Suite  *Suite
	Master []byte // key || salt
	Tag    int
}

func newNGKey(t testing.TB, suite string, tag int) ngKey {
	t.Helper()
	s := LookupSuite(suite)
	if s == nil {
		t.Fatalf("unknown suite %s", suite)
	}
	k := ngKey{Suite: s, Master: make([]byte, s.KeyLen+s.SaltLen), Tag: tag}
	if _, err := rand.Read(k.Master); err != nil {
		t.Fatal(err)
	}
	return k
}

// parseNGKey reads an a=crypto value or line with the gateway's parser.
func parseNGKey(line string) (ngKey, error) {
	c, err := ParseCrypto(line)
	if err != nil {
		return ngKey{}, err
	}
	return ngKey{Suite: c.Suite, Master: append(append([]byte(nil), c.Keys[0].Key...), c.Keys[0].Salt...), Tag: int(c.Tag)}, nil
}

func (k ngKey) Inline() string { return base64.StdEncoding.EncodeToString(k.Master) }

func (k ngKey) CryptoLine() string {
	return fmt.Sprintf("a=crypto:%d %s inline:%s", k.Tag, k.Suite.Name, k.Inline())
}

func (k ngKey) Context(opts ...srtp.ContextOption) (*srtp.Context, error) {
	return srtp.CreateContext(k.Master[:k.Suite.KeyLen], k.Master[k.Suite.KeyLen:], k.Suite.Profile, opts...)
}

// opensWith reports whether SRTP packet b authenticates under one of keys.
func opensWith(b []byte, keys ...ngKey) bool {
	for _, k := range keys {
		if ctx, err := k.Context(); err == nil {
			if _, err := ctx.DecryptRTP(nil, b, nil); err == nil {
				return true
			}
		}
	}
	return false
}

// ngClient is a minimal ng client over the gateway's own codec: one
// request at a time, a reply matched by cookie, three tries a second
// apart. Not safe for concurrent use.
type ngClient struct {
	conn *net.UDPConn
	n    int
	buf  []byte
}

func dialNG(addr netip.AddrPort) (*ngClient, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, err
	}
	return &ngClient{conn: c, buf: make([]byte, 65536)}, nil
}

func (c *ngClient) Close() error { return c.conn.Close() }

// Call sends msg and returns the reply; a result other than ok or pong
// is an error carrying the error-reason.
func (c *ngClient) Call(ctx context.Context, msg map[string]any) (map[string]any, error) {
	c.n++
	cookie := "t_" + strconv.Itoa(c.n)
	pkt, err := ng.Reply(cookie, msg)
	if err != nil {
		return nil, err
	}
	for try := 0; try < 3; try++ {
		if _, err := c.conn.Write(pkt); err != nil {
			return nil, err
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
				return nil, err
			}
			ck, body, ok := ng.SplitCookie(c.buf[:n])
			if !ok || ck != cookie {
				continue
			}
			d, err := ng.DecodeRequest(bytes.Clone(body))
			if err != nil {
				return nil, err
			}
			if r := d.Str("result"); r != "ok" && r != "pong" {
				return d, fmt.Errorf("ng %v: %s %s", msg["command"], r, d.Str("error-reason"))
			}
			return d, nil
		}
	}
	return nil, fmt.Errorf("ng %v: no reply", msg["command"])
}
