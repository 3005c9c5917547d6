package gateway

import (
	"bytes"
	"container/list"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediaedge/mediaedge/gateway/ng"
)

// ngServer is the ng control protocol listener: one UDP socket, one
// goroutine that reads, answers and runs requests one at a time (so a
// retransmission arriving while its request runs is answered from the
// reply cache afterwards, never run twice), and a janitor goroutine that
// frees unanswered offers and delayed deletes; with listen_tcp also a
// TCP listener and a goroutine per connection (ngtcp.go), whose requests
// run one at a time with the others under mu. Gateway.Start starts it,
// Gateway.Close closes it and waits for every goroutine.
type ngServer struct {
	// set in newNGServer, never changed
	g       *Gateway
	log     *slog.Logger
	m       *ngMetrics
	conn    *net.UDPConn                   // nil when listen is off
	tcp     *net.TCPListener               // nil when listen_tcp is off
	allowed atomic.Pointer[[]netip.Prefix] // replaced on reload
	done    chan struct{}
	wg      sync.WaitGroup

	// mu guards the following (the calls, the reply cache, the rate
	// buckets and the totals).
	mu      sync.Mutex
	calls   map[string]*ngCall  // by key: the call-id, or forkKey for a fork
	forks   map[string][]string // call-id → keys of its forks, when any
	pending int                 // streams of offered calls not yet answered (max_sessions)
	cache   replyCache
	buckets map[netip.Addr]*bucket
	totals  ngTotals

	// connMu guards the TCP connections (ngtcp.go).
	connMu     sync.Mutex
	conns      map[*net.TCPConn]struct{}
	connClosed bool // close ran: no new connection is served
}

// ngTotals are counters since start, for the statistics command.
type ngTotals struct {
	calls, offers, answers, deletes, errors uint64
}

func newNGServer(g *Gateway, cfg *NGConfig, m *ngMetrics) (*ngServer, error) {
	var conn *net.UDPConn
	if cfg.Listen != "" {
		ap, err := netip.ParseAddrPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("gateway: ng listen %q: %w", cfg.Listen, err)
		}
		if conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap)); err != nil {
			return nil, fmt.Errorf("gateway: ng listen: %w", err)
		}
	}
	tcp, err := listenNGTCP(cfg.ListenTCP)
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, err
	}
	s := &ngServer{g: g, log: g.log.With("subsystem", "ng"), m: m, conn: conn, tcp: tcp, done: make(chan struct{}),
		calls: map[string]*ngCall{}, forks: map[string][]string{}, buckets: map[netip.Addr]*bucket{},
		conns: map[*net.TCPConn]struct{}{}}
	s.reload(cfg)
	s.cache.init()
	return s, nil
}

// reload applies a new ng configuration: allowed sources at once, limits
// and timeouts on the next request (they are read per request). The
// listen address needs a restart.
func (s *ngServer) reload(cfg *NGConfig) {
	var allowed []netip.Prefix
	for _, p := range cfg.AllowedSources {
		if pf, err := netip.ParsePrefix(p); err == nil {
			allowed = append(allowed, pf.Masked())
		}
	}
	s.allowed.Store(&allowed)
}

// Addr returns the listener's address.
func (s *ngServer) addr() netip.AddrPort {
	if s.conn == nil {
		return netip.AddrPort{}
	}
	return s.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (s *ngServer) start() {
	s.log.Info("ng listener started", "listen", s.addr().String(), "listen_tcp", s.tcpAddr().String(),
		"allowed_sources", len(*s.allowed.Load()))
	s.wg.Add(1)
	go s.janitor()
	if s.conn != nil {
		s.wg.Add(1)
		go s.serve()
	}
	if s.tcp != nil {
		s.wg.Add(1)
		go s.serveTCP()
	}
}

// close stops every goroutine (readers, TCP connections, janitor) and
// frees every call.
func (s *ngServer) close() {
	if s.conn != nil {
		_ = s.conn.Close()
	}
	s.closeTCP()
	close(s.done)
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, c := range s.calls {
		s.freeCallLocked(c)
		delete(s.calls, id)
	}
	clear(s.forks)
	s.m.calls.Set(0)
	for e := s.cache.order.Front(); e != nil; e = e.Next() {
		clear(e.Value.(*cached).reply)
	}
	s.cache.init()
}

func (s *ngServer) serve() {
	defer s.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, src, err := s.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("ng read failed", "err", err)
			continue
		}
		if out := s.handle(buf[:n], src, time.Now()); out != nil {
			_, _ = s.conn.WriteToUDPAddrPort(out, src)
			clear(out)
		}
	}
}

// handle answers one datagram; nil means drop it (counted). The reply
// is the caller's copy, not the cached one (which another goroutine may
// evict and wipe): it holds keys, so the caller wipes it once sent.
func (s *ngServer) handle(b []byte, src netip.AddrPort, now time.Time) []byte {
	cfg := &s.g.cfg.Load().NG
	from := src.Addr().Unmap()
	if !s.allowedSource(from) {
		s.m.drops.WithLabelValues("refused_source").Inc()
		return nil
	}
	if len(b) > int(cfg.MaxRequest) {
		s.m.drops.WithLabelValues("too_large").Inc()
		return nil
	}
	cookie, body, ok := ng.SplitCookie(b)
	if !ok {
		s.m.drops.WithLabelValues("no_cookie").Inc()
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := src.String() + " " + cookie
	if out := s.cache.get(key, now); out != nil {
		s.m.request("retransmission", "retransmission")
		return bytes.Clone(out)
	}
	if !s.takeToken(from, cfg.RatePerSource, now) {
		s.m.drops.WithLabelValues("rate_limited").Inc()
		return nil
	}
	cmd, reply := s.run(body, src, now)
	result := "ok"
	if r, _ := reply["result"].(string); r == "error" {
		result = "error"
		s.totals.errors++
	}
	s.m.request(cmd, result)
	out, err := ng.Reply(cookie, reply)
	if err != nil {
		s.log.Error("ng reply could not be encoded", "command", cmd, "err", err)
		out, _ = ng.Reply(cookie, ng.ErrorReply("internal error"))
	}
	s.cache.put(key, out, now, cfg.ReplyCache.D(), cfg.ReplyCacheSize)
	return bytes.Clone(out)
}

func (s *ngServer) allowedSource(a netip.Addr) bool {
	for _, p := range *s.allowed.Load() {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// run decodes and runs one request. Locked: s.mu is held.
func (s *ngServer) run(body []byte, src netip.AddrPort, now time.Time) (string, map[string]any) {
	req, err := ng.DecodeRequest(body)
	if err != nil {
		return "", ng.ErrorReply(err.Error())
	}
	cmd := req.Str("command")
	switch cmd {
	case "ping":
		return cmd, map[string]any{"result": "pong"}
	case "offer", "answer":
		return cmd, s.offerAnswer(cmd, req, now)
	case "delete":
		return cmd, s.deleteCall(req, now)
	case "query":
		return cmd, s.query(req)
	case "list":
		return cmd, s.list(req)
	case "statistics":
		return cmd, s.statistics()
	case "":
		return cmd, ng.ErrorReply("no command")
	}
	return cmd, ng.ErrorReply("unknown command: " + clip(cmd))
}

// janitor frees offers never answered and calls whose delete-delay ran
// out, about once a second.
func (s *ngServer) janitor() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			s.sweep(now)
		}
	}
}

func (s *ngServer) sweep(now time.Time) {
	timeout := s.g.cfg.Load().NG.OfferTimeout.D()
	s.mu.Lock()
	defer s.mu.Unlock()
	// Which sessions still run, in one look (s.mu is held, so no call
	// is answered meanwhile): an idle timeout may have ended them.
	s.g.mu.Lock()
	alive := make(map[string]bool, len(s.g.sessions))
	for id := range s.g.sessions {
		alive[id] = true
	}
	s.g.mu.Unlock()
	for _, c := range s.calls {
		switch {
		case !c.deleteAt.IsZero() && !now.Before(c.deleteAt),
			!c.answered && now.Sub(c.created) > timeout,
			c.answered && !c.anyAlive(alive):
			s.forgetLocked(c)
		}
	}
	s.m.calls.Set(float64(len(s.calls)))
}

// bucket is a token bucket of one source address.
type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds the rate buckets; the allowed sources are a few
// proxies, so the map stays small unless allowed_sources is wide.
const maxBuckets = 4096

func (s *ngServer) takeToken(a netip.Addr, rate int, now time.Time) bool {
	b := s.buckets[a]
	if b == nil {
		if len(s.buckets) >= maxBuckets {
			for k, v := range s.buckets {
				if now.Sub(v.last) > time.Second {
					delete(s.buckets, k)
				}
			}
			if len(s.buckets) >= maxBuckets {
				return false
			}
		}
		b = &bucket{tokens: float64(rate), last: now}
		s.buckets[a] = b
	}
	b.tokens = min(float64(rate), b.tokens+now.Sub(b.last).Seconds()*float64(rate))
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// replyCache keeps the replies of recent requests by source and cookie,
// oldest first, bounded in age and count. Replies hold keys (the SDP):
// an evicted one is overwritten.
type replyCache struct {
	m     map[string]*list.Element
	order *list.List
}

type cached struct {
	key     string
	reply   []byte
	expires time.Time
}

func (c *replyCache) init() {
	c.m = map[string]*list.Element{}
	c.order = list.New()
}

func (c *replyCache) get(key string, now time.Time) []byte {
	e := c.m[key]
	if e == nil {
		return nil
	}
	v := e.Value.(*cached)
	if now.After(v.expires) {
		return nil
	}
	return v.reply
}

func (c *replyCache) put(key string, reply []byte, now time.Time, ttl time.Duration, size int) {
	for e := c.order.Front(); e != nil; e = c.order.Front() {
		v := e.Value.(*cached)
		if c.order.Len() < size && now.Before(v.expires) {
			break
		}
		c.order.Remove(e)
		delete(c.m, v.key)
		clear(v.reply) // replies carry the gateway's keys in their SDP
	}
	if old := c.m[key]; old != nil {
		c.order.Remove(old)
	}
	c.m[key] = c.order.PushBack(&cached{key: key, reply: reply, expires: now.Add(ttl)})
}

// NGAddr returns the address of the ng listener; invalid when it is off
// or the gateway is not running.
func (g *Gateway) NGAddr() netip.AddrPort {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ng == nil {
		return netip.AddrPort{}
	}
	return g.ng.addr()
}
