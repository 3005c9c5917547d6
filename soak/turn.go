package soak

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// idleAlloc is an allocation that carries no media: one client socket,
// driven by plain STUN transactions so that 10,000 of them cost the soak
// no goroutines.
type idleAlloc struct {
	conn  *net.UDPConn
	nonce stun.Nonce
}

var errNoAnswer = errors.New("soak: no answer from the relay")

// transact sends m and returns the answer with m's transaction ID, retrying
// three times.
func transact(c *net.UDPConn, to *net.UDPAddr, m *stun.Message) (*stun.Message, error) {
	buf := make([]byte, 1500)
	for range 3 {
		if _, err := c.WriteToUDP(m.Raw, to); err != nil {
			return nil, err
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			n, err := c.Read(buf)
			if err != nil {
				break // timeout: send again
			}
			res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if res.Decode() == nil && res.TransactionID == m.TransactionID {
				return res, nil
			}
		}
	}
	return nil, errNoAnswer
}

// idleLifetime is the lifetime the idle allocations ask for. pion grants a
// requested lifetime only when it is below its one-hour maximum; a request
// of exactly one hour gets the relay's default (10 minutes), and the
// allocations would expire between two refreshes.
const idleLifetime = 50 * time.Minute

func lifetimeAttr(d time.Duration) stun.RawAttribute {
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, uint32(d/time.Second))
	return stun.RawAttribute{Type: stun.AttrLifetime, Value: v}
}

// signed sends a request of method with attrs, authenticated with the
// long-term credentials, learning the nonce from a 401 or 438 first.
func (a *idleAlloc) signed(d *daemon, to *net.UDPAddr, method stun.Method, attrs ...stun.Setter) (*stun.Message, error) {
	for range 3 {
		s := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
		s = append(s, attrs...)
		if len(a.nonce) > 0 {
			s = append(s, stun.NewUsername(d.user), stun.NewRealm(d.realm), a.nonce,
				stun.NewLongTermIntegrity(d.user, d.realm, d.pass))
		}
		s = append(s, stun.Fingerprint)
		m, err := stun.Build(s...)
		if err != nil {
			return nil, err
		}
		res, err := transact(a.conn, to, m)
		if err != nil {
			return nil, err
		}
		if res.Type.Class == stun.ClassSuccessResponse {
			return res, nil
		}
		var ec stun.ErrorCodeAttribute
		_ = ec.GetFrom(res)
		if ec.Code != stun.CodeUnauthorized && ec.Code != stun.CodeStaleNonce {
			return nil, fmt.Errorf("soak: %s answered %d %s", method, ec.Code, ec.Reason)
		}
		if err := a.nonce.GetFrom(res); err != nil {
			return nil, fmt.Errorf("soak: %s: %d without a nonce", method, ec.Code)
		}
	}
	return nil, fmt.Errorf("soak: %s: authentication did not succeed", method)
}

// allocateIdle makes one allocation with the longest lifetime pion grants.
func allocateIdle(d *daemon, to *net.UDPAddr) (*idleAlloc, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	a := &idleAlloc{conn: c}
	res, err := a.signed(d, to, stun.MethodAllocate,
		stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}},
		lifetimeAttr(idleLifetime))
	if err != nil {
		c.Close()
		return nil, err
	}
	if err := checkLifetime(res); err != nil {
		a.release(d, to)
		return nil, err
	}
	return a, nil
}

// refresh renews the allocation for another idleLifetime.
func (a *idleAlloc) refresh(d *daemon, to *net.UDPAddr) error {
	res, err := a.signed(d, to, stun.MethodRefresh, lifetimeAttr(idleLifetime))
	if err != nil {
		return err
	}
	return checkLifetime(res)
}

// checkLifetime fails when the relay granted less than idleLifetime: the
// allocation would expire before the round-robin refresh comes back to it.
func checkLifetime(res *stun.Message) error {
	v, err := res.Get(stun.AttrLifetime)
	if err != nil || len(v) != 4 {
		return errors.New("soak: no LIFETIME in the relay's answer")
	}
	if got := time.Duration(binary.BigEndian.Uint32(v)) * time.Second; got < idleLifetime {
		return fmt.Errorf("soak: the relay granted a lifetime of %s, asked for %s", got, idleLifetime)
	}
	return nil
}

// release deletes the allocation (Refresh with LIFETIME 0) and closes the
// socket.
func (a *idleAlloc) release(d *daemon, to *net.UDPAddr) error {
	_, err := a.signed(d, to, stun.MethodRefresh, lifetimeAttr(0))
	a.conn.Close()
	return err
}

// mediaAlloc is a sampled allocation: a pion client relaying a paced
// stream to the echo peer and counting what comes back.
type mediaAlloc struct {
	idx    uint32
	client *turn.Client
	conn   *net.UDPConn
	relay  net.PacketConn
	sent   uint32
	back   bitset // indexes echoed back to the client
}

// echoPeer receives the sampled allocations' datagrams, records each
// index per allocation, and echoes them back.
type echoPeer struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  map[uint32]*bitset
	wg   sync.WaitGroup
}

func newEchoPeer() (*echoPeer, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	bigBuffer(c)
	p := &echoPeer{conn: c, got: map[uint32]*bitset{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n < 8 {
				continue
			}
			id, seq := binary.BigEndian.Uint32(buf[0:4]), binary.BigEndian.Uint32(buf[4:8])
			p.mu.Lock()
			b := p.got[id]
			if b == nil {
				b = &bitset{}
				p.got[id] = b
			}
			b.set(seq)
			p.mu.Unlock()
			_, _ = c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return p, nil
}

func (p *echoPeer) received(id uint32) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b := p.got[id]; b != nil {
		return b.count()
	}
	return 0
}

func (p *echoPeer) close() {
	p.conn.Close()
	p.wg.Wait()
}

// newMediaAlloc allocates through a pion client.
func newMediaAlloc(d *daemon, idx uint32) (*mediaAlloc, error) {
	conn, err := listenLoopback()
	if err != nil {
		return nil, err
	}
	bigBuffer(conn)
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: d.turnAddr, TURNServerAddr: d.turnAddr, Conn: conn,
		Username: d.user, Password: d.pass, Realm: d.realm,
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.Listen(); err != nil {
		c.Close()
		conn.Close()
		return nil, err
	}
	rc, err := c.Allocate()
	if err != nil {
		c.Close()
		conn.Close()
		return nil, err
	}
	m := &mediaAlloc{idx: idx, client: c, conn: conn, relay: rc}
	return m, nil
}

// receive counts echoes until the relay connection closes.
func (m *mediaAlloc) receive(mu *sync.Mutex) {
	buf := make([]byte, 2048)
	for {
		n, _, err := m.relay.ReadFrom(buf)
		if err != nil {
			return
		}
		if n >= 8 && binary.BigEndian.Uint32(buf[0:4]) == m.idx {
			mu.Lock()
			m.back.set(binary.BigEndian.Uint32(buf[4:8]))
			mu.Unlock()
		}
	}
}

// send sends datagram number seq to peer.
func (m *mediaAlloc) send(peer net.Addr, seq uint32, payload []byte) error {
	binary.BigEndian.PutUint32(payload[0:4], m.idx)
	binary.BigEndian.PutUint32(payload[4:8], seq)
	_, err := m.relay.WriteTo(payload, peer)
	return err
}

func (m *mediaAlloc) close() {
	m.relay.Close()
	m.client.Close()
	m.conn.Close()
}

// bitset records which indexes arrived (duplicates count once).
type bitset struct {
	w []uint64
	n int
}

func (b *bitset) set(i uint32) {
	for int(i/64) >= len(b.w) {
		b.w = append(b.w, 0)
	}
	if b.w[i/64]&(1<<(i%64)) == 0 {
		b.w[i/64] |= 1 << (i % 64)
		b.n++
	}
}

func (b *bitset) count() int { return b.n }
