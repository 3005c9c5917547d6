package gateway

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/logging"
)

// dtlsTransport is one DTLS association on one leg's 5-tuple: the
// handshake that keys the leg (every leg in legs: the one it was made
// for; the list is what a transport is detached from), and
// after it the DTLS connection that answers the peer's retransmitted
// final flight and alerts until the leg ends.
//
// The worker that owns the legs creates the transport, feeds it the DTLS
// records that arrive on the leg's socket (a bounded queue: a full queue
// drops and counts, never blocks the worker) and sends what it writes.
// The handshake itself runs in one goroutine of the transport (run) plus
// pion/dtls's own; the worker starts it, and stop ends it: the gateway
// waits for it in Close.
type dtlsTransport struct {
	// set in newDTLSTransport, never changed
	g        *Gateway
	w        *worker
	plan     *dtlsPlan
	cert     *dtlsCert
	timeout  time.Duration
	pc       *dtlsPacketConn
	done     chan struct{} // closed by stop
	stopOnce sync.Once
	// why is set by the handshake's callbacks (pion's goroutines) when
	// they refuse the peer, so that the failure is counted by its cause.
	why     atomic.Pointer[string]
	matched atomic.Pointer[Fingerprint]

	// owned by the worker
	legs    []*leg
	state   string
	reason  string
	profile *dtlsProfile
	started bool
	stopped bool
	src     netip.AddrPort // where the peer's records come from
	// hello is the random of the ClientHello that started a passive
	// transport's handshake (its retransmissions and the one after a
	// HelloVerifyRequest carry the same); another random on a connected
	// transport is the peer starting a new association.
	hello    [32]byte
	hasHello bool
}

// dtlsResult is what a handshake posts to the worker: the exported keys
// (the gateway's and the peer's) or why it failed.
type dtlsResult struct {
	profile     *dtlsProfile
	local, peer MasterKey
	reason      string // "" on success
}

func (r *dtlsResult) wipe() {
	wipe(r.local.Key)
	wipe(r.local.Salt)
	wipe(r.peer.Key)
	wipe(r.peer.Salt)
}

// Handshake results (the result label of
// mediaedge_gateway_dtls_handshakes_total and the reason of
// dtls_handshake_failed events).
const (
	dtlsOK                  = "ok"
	dtlsFingerprintMismatch = "fingerprint_mismatch"
	dtlsNoSRTP              = "no_use_srtp"
	dtlsProfileRefused      = "profile_not_allowed"
	dtlsTimeout             = "timeout"
	dtlsLimit               = "limit"
	dtlsError               = "error"
)

var dtlsResults = []string{dtlsOK, dtlsFingerprintMismatch, dtlsNoSRTP, dtlsProfileRefused, dtlsTimeout, dtlsLimit, dtlsError}

// errFingerprint: the peer's certificate matches none of its
// a=fingerprint values.
var errFingerprint = errors.New("gateway: the peer's DTLS certificate does not match its fingerprint")

// newDTLSTransport returns a transport for leg l (not started), with the
// certificate of l's plan (pinned by dtlsAttach). Runs on l's worker.
func (w *worker) newDTLSTransport(l *leg) *dtlsTransport {
	cfg := &w.cfg.DTLS
	cert := l.dtls.plan.cert
	if cert == nil {
		cert = w.g.dtlsCert.Load()
	}
	t := &dtlsTransport{g: w.g, w: w, plan: l.dtls.plan, cert: cert,
		timeout: cfg.HandshakeTimeout.D(), done: make(chan struct{}), state: DTLSStateNew}
	var local net.Addr = &net.UDPAddr{}
	if l.rtp != nil {
		local = net.UDPAddrFromAddrPort(l.rtp.local)
	}
	t.pc = newDTLSPacketConn(t, cfg.QueueLen, local, &net.UDPAddr{IP: net.IPv4zero, Port: 9})
	t.legs = []*leg{l}
	return t
}

// discardLogs silences pion/dtls: handshake failures are counted and
// reported as events instead.
var discardLogs = &logging.DefaultLoggerFactory{Writer: io.Discard, DefaultLogLevel: logging.LogLevelDisabled,
	ScopeLevels: map[string]logging.LogLevel{}}

// dtlsOptions returns the pion options of t's handshake, shared by both
// roles.
func (t *dtlsTransport) dtlsOptions() []dtls.Option {
	ids := make([]dtls.SRTPProtectionProfile, len(t.plan.profiles))
	for i, p := range t.plan.profiles {
		ids[i] = p.id
	}
	return []dtls.Option{
		dtls.WithCertificates(t.cert.cert),
		dtls.WithSRTPProtectionProfiles(ids...),
		dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret),
		// The certificate is self-signed: what authenticates the peer is
		// its fingerprint from the signalling (RFC 5763 section 5).
		dtls.WithInsecureSkipVerify(true),
		dtls.WithVerifyPeerCertificate(t.verify),
		dtls.WithLoggerFactory(discardLogs),
		dtls.WithMTU(1200),
	}
}

// verify checks the peer's certificate against its fingerprints. Called
// by pion during the handshake.
func (t *dtlsTransport) verify(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) > 0 {
		for _, fp := range t.plan.peerFP {
			if fp.matches(raw[0]) {
				m := fp
				t.matched.Store(&m)
				return nil
			}
		}
	}
	t.setWhy(dtlsFingerprintMismatch)
	return errFingerprint
}

func (t *dtlsTransport) setWhy(r string) { t.why.CompareAndSwap(nil, &r) }

// run is the handshake goroutine: it handshakes, posts the result to the
// worker and, on success, keeps the connection until stop.
func (t *dtlsTransport) run() {
	defer t.g.dtlsWG.Done()
	released := false
	release := func() {
		if !released {
			released = true
			t.g.dtlsActive.Add(-1)
		}
	}
	defer release()
	opts := t.dtlsOptions()
	var conn *dtls.Conn
	var err error
	if t.plan.role == DTLSActive {
		co := make([]dtls.ClientOption, len(opts))
		for i, o := range opts {
			co[i] = o
		}
		conn, err = dtls.ClientWithOptions(t.pc, t.pc.remote, co...)
	} else {
		so := make([]dtls.ServerOption, 0, len(opts)+1)
		so = append(so, dtls.WithClientAuth(dtls.RequireAnyClientCert))
		for _, o := range opts {
			so = append(so, o)
		}
		conn, err = dtls.ServerWithOptions(t.pc, t.pc.remote, so...)
	}
	if err != nil {
		t.post(&dtlsResult{reason: dtlsError})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.timeout)
	var watch sync.WaitGroup
	watch.Go(func() {
		// A stop during the handshake ends it at once.
		select {
		case <-t.done:
			cancel()
		case <-ctx.Done():
		}
	})
	err = conn.HandshakeContext(ctx)
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	cancel()
	watch.Wait()
	release()
	res := &dtlsResult{}
	if err == nil {
		res = t.export(conn)
	} else {
		switch why := t.why.Load(); {
		case why != nil:
			res.reason = *why
		case timedOut:
			res.reason = dtlsTimeout
		default:
			res.reason = dtlsError
		}
	}
	if res.reason != "" {
		_ = conn.Close()
		t.post(res)
		return
	}
	t.post(res)
	t.drain(conn)
	<-t.done
	_ = conn.Close()
}

// drain reads the connection until it closes. Application data (none is
// expected on a DTLS-SRTP association) is discarded, so that pion's
// reader, which answers the peer's retransmitted flights, never stalls on
// it. A close by the peer (close_notify or a fatal alert) is reported to
// the worker; stop ends it too.
func (t *dtlsTransport) drain(conn *dtls.Conn) {
	buf := make([]byte, 1<<14+2048) // the largest record
	for {
		_, err := conn.Read(buf)
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
			break
		}
	}
	select {
	case <-t.done:
	default:
		t.w.post(func() { t.w.dtlsPeerClosed(t) })
	}
}

// export derives the SRTP master keys of the finished handshake (RFC
// 5764 section 4.2): client key, server key, client salt, server salt.
func (t *dtlsTransport) export(conn *dtls.Conn) *dtlsResult {
	id, ok := conn.SelectedSRTPProtectionProfile()
	if !ok {
		return &dtlsResult{reason: dtlsNoSRTP}
	}
	p := profileByID(id)
	if p == nil || !containsProfile(t.plan.profiles, p) {
		return &dtlsResult{reason: dtlsProfileRefused}
	}
	st, ok := conn.ConnectionState()
	if !ok {
		return &dtlsResult{reason: dtlsError}
	}
	kl, sl := p.suite.KeyLen, p.suite.SaltLen
	km, err := st.ExportKeyingMaterial("EXTRACTOR-dtls_srtp", nil, 2*(kl+sl))
	if err != nil {
		return &dtlsResult{reason: dtlsError}
	}
	client := MasterKey{Key: km[0:kl:kl], Salt: km[2*kl : 2*kl+sl : 2*kl+sl]}
	server := MasterKey{Key: km[kl : 2*kl : 2*kl], Salt: km[2*kl+sl : 2*(kl+sl)]}
	res := &dtlsResult{profile: p, local: server, peer: client}
	if t.plan.role == DTLSActive {
		res.local, res.peer = client, server
	}
	return res
}

// post hands a result to the worker; the keys are wiped if the worker is
// gone.
func (t *dtlsTransport) post(res *dtlsResult) {
	if !t.w.post(func() { t.w.dtlsFinished(t, res) }) {
		res.wipe()
	}
}

// stop ends the transport: its handshake or connection is closed and its
// goroutines end. Idempotent; safe for concurrent use.
func (t *dtlsTransport) stop() {
	t.stopOnce.Do(func() {
		close(t.done)
		_ = t.pc.Close()
	})
}
