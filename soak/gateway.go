package soak

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"sync"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/mediaedge/mediaedge/bench/srtpcheck"
	"github.com/mediaedge/mediaedge/bench/sut"
)

// The gateway's session API as the soak drives it (docs/gateway.md): the
// answers in bench/sut's shapes, the two requests here (the soak never
// imports the gateway package).

// legRequest asks for one leg of a session.
type legRequest struct {
	Remote  string `json:"remote"`
	RTCPMux bool   `json:"rtcp_mux"`
	Crypto  string `json:"crypto"`
}

// sessionRequest is the body of POST /v1/sessions.
type sessionRequest struct {
	ID       string     `json:"id"`
	Internal legRequest `json:"internal"`
	Cloud    legRequest `json:"cloud"`
}

const soakSuite = "AES_CM_128_HMAC_SHA1_80"

// createSession creates session id whose legs send to intRemote and
// cloudRemote, with fresh keys for both peers, and returns the answer and
// the peers' keys.
func createSession(ctx context.Context, c sut.APIClient, id string, intRemote, cloudRemote netip.AddrPort) (sut.Session, srtpcheck.Key, srtpcheck.Key, error) {
	suite, err := srtpcheck.LookupSuite(soakSuite)
	if err != nil {
		return sut.Session{}, srtpcheck.Key{}, srtpcheck.Key{}, err
	}
	kInt, err := srtpcheck.NewKey(suite)
	if err != nil {
		return sut.Session{}, srtpcheck.Key{}, srtpcheck.Key{}, err
	}
	kCloud, err := srtpcheck.NewKey(suite)
	if err != nil {
		return sut.Session{}, srtpcheck.Key{}, srtpcheck.Key{}, err
	}
	req := sessionRequest{
		ID:       id,
		Internal: legRequest{Remote: intRemote.String(), RTCPMux: true, Crypto: kInt.CryptoLine()},
		Cloud:    legRequest{Remote: cloudRemote.String(), RTCPMux: true, Crypto: kCloud.CryptoLine()},
	}
	var s sut.Session
	if err := c.Do(ctx, "POST", "/v1/sessions", req, &s); err != nil {
		return s, kInt, kCloud, fmt.Errorf("soak: creating session %s: %w", id, err)
	}
	return s, kInt, kCloud, nil
}

func deleteSession(ctx context.Context, c sut.APIClient, id string) error {
	if err := c.Do(ctx, "DELETE", "/v1/sessions/"+url.PathEscape(id), nil, nil); err != nil {
		return fmt.Errorf("soak: deleting session %s: %w", id, err)
	}
	return nil
}

// srtpStream is one direction of a sampled session: a sender socket that
// encrypts towards the gateway and a receiver socket where the gateway's
// re-keyed output arrives.
type srtpStream struct {
	name   string
	ssrc   uint32
	tx     *srtp.Context // the sender's key (owned by the sending goroutine)
	rx     *srtp.Context // the gateway's key on the far leg (owned by the reader)
	send   *net.UDPConn
	recv   *net.UDPConn
	target *net.UDPAddr
	sent   uint32

	mu  sync.Mutex
	got bitset
	bad int // packets that did not decrypt
}

// mediaSession is a sampled session: its two peer sockets carry a stream
// each way.
type mediaSession struct {
	id      string
	intPeer *net.UDPConn
	clPeer  *net.UDPConn
	streams [2]*srtpStream
	wg      sync.WaitGroup
}

func listenLoopback() (*net.UDPConn, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err == nil {
		bigBuffer(c)
	}
	return c, err
}

// newMediaSession creates a session whose legs point at two new peer
// sockets and starts their readers.
func newMediaSession(ctx context.Context, c sut.APIClient, id string, ssrc uint32) (*mediaSession, error) {
	ip, err := listenLoopback()
	if err != nil {
		return nil, err
	}
	cp, err := listenLoopback()
	if err != nil {
		ip.Close()
		return nil, err
	}
	ms := &mediaSession{id: id, intPeer: ip, clPeer: cp}
	s, kInt, kCloud, err := createSession(ctx, c, id, ip.LocalAddr().(*net.UDPAddr).AddrPort(), cp.LocalAddr().(*net.UDPAddr).AddrPort())
	if err != nil {
		ms.closeSockets()
		return nil, err
	}
	gInt, err1 := srtpcheck.ParseCryptoLine(s.Internal.Crypto)
	gCloud, err2 := srtpcheck.ParseCryptoLine(s.Cloud.Crypto)
	intLocal, err3 := net.ResolveUDPAddr("udp4", s.Internal.Local)
	cloudLocal, err4 := net.ResolveUDPAddr("udp4", s.Cloud.Local)
	for _, e := range []error{err1, err2, err3, err4} {
		if e != nil {
			ms.closeSockets()
			return nil, fmt.Errorf("soak: session %s: %w", id, e)
		}
	}
	mk := func(name string, ssrc uint32, txKey, rxKey srtpcheck.Key, send, recv *net.UDPConn, target *net.UDPAddr) (*srtpStream, error) {
		tx, err := txKey.Context()
		if err != nil {
			return nil, err
		}
		rx, err := rxKey.Context()
		if err != nil {
			return nil, err
		}
		return &srtpStream{name: name, ssrc: ssrc, tx: tx, rx: rx, send: send, recv: recv, target: target}, nil
	}
	if ms.streams[0], err = mk("internal->cloud", ssrc, kInt, gCloud, ip, cp, intLocal); err != nil {
		ms.closeSockets()
		return nil, err
	}
	if ms.streams[1], err = mk("cloud->internal", ssrc+1, kCloud, gInt, cp, ip, cloudLocal); err != nil {
		ms.closeSockets()
		return nil, err
	}
	for _, st := range ms.streams {
		ms.wg.Add(1)
		go func() {
			defer ms.wg.Done()
			st.receive()
		}()
	}
	return ms, nil
}

// receive decrypts what arrives on the stream's receiving socket and
// records the index carried in the payload.
func (st *srtpStream) receive() {
	buf := make([]byte, 2048)
	out := make([]byte, 2048)
	var hdr rtp.Header
	for {
		n, err := st.recv.Read(buf)
		if err != nil {
			return
		}
		plain, err := st.rx.DecryptRTP(out[:0], buf[:n], &hdr)
		st.mu.Lock()
		if err != nil || hdr.SSRC != st.ssrc || len(plain) < hdr.MarshalSize()+4 {
			st.bad++
		} else {
			st.got.set(binary.BigEndian.Uint32(plain[hdr.MarshalSize():]))
		}
		st.mu.Unlock()
	}
}

// sendNext encrypts and sends the next packet (160 bytes of payload whose
// first four carry the index).
func (st *srtpStream) sendNext(payload []byte) error {
	seq := st.sent
	binary.BigEndian.PutUint32(payload[0:4], seq)
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: uint16(seq),
		Timestamp: seq * 160, SSRC: st.ssrc}, Payload: payload}
	raw, err := p.Marshal()
	if err != nil {
		return err
	}
	enc, err := st.tx.EncryptRTP(nil, raw, nil)
	if err != nil {
		return err
	}
	st.sent++
	_, err = st.send.WriteToUDP(enc, st.target)
	return err
}

func (st *srtpStream) result() (got, bad int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.got.count(), st.bad
}

func (ms *mediaSession) closeSockets() {
	ms.intPeer.Close()
	ms.clPeer.Close()
}

func (ms *mediaSession) close() {
	ms.closeSockets()
	ms.wg.Wait()
}
