package relay

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

// Auth failure reasons: the bounded label values of the auth-failures
// metric and the "reason" of the log line.
const (
	authUnknownUser  = "unknown_user"
	authBadIntegrity = "bad_integrity"
	authExpired      = "expired"
	authWrongRealm   = "wrong_realm"
)

// credentials is an immutable snapshot of who may authenticate. Reload
// builds a new one and swaps it in; in-flight requests finish on the old.
type credentials struct {
	realm   string
	users   map[string][]byte // name -> long-term key
	secrets [][]byte          // REST shared secrets, all in force
	// maxTTL refuses REST credentials whose expiry is further away than
	// this (0: no limit), so a leaked long-lived credential is bounded.
	maxTTL time.Duration
}

// authenticator answers pion's AuthHandler from the current credentials.
// Safe for concurrent use.
type authenticator struct {
	// set in New, never changed
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	logRate *rateGate

	cur atomic.Pointer[credentials]

	// keyCache maps a client address and REST user name to the key of the
	// secret that signed its requests, learnt by preverify from a message whose integrity that key
	// verified. pion's AuthHandler must return one key before it checks
	// MESSAGE-INTEGRITY, so with several secrets in force (rotation) the
	// relay finds the right one on the raw message first. Cleared on every
	// reload so that a removed secret stops working at once.
	cacheMu  sync.Mutex
	keyCache map[cacheKey][]byte
}

// cacheKey names one client's REST user name: two services minting with
// different secrets can produce the same user name (same user, same expiry
// second), so the key is learnt per client address.
type cacheKey struct {
	src      netip.AddrPort
	username string
}

// keyCacheMax bounds keyCache; a full cache is cleared (entries are cheap
// to learn again from the next request).
const keyCacheMax = 65536

func newAuthenticator(log *slog.Logger, m *metrics, c *credentials) *authenticator {
	a := &authenticator{log: log, metrics: m, now: time.Now, logRate: newRateGate(20, time.Second), keyCache: map[cacheKey][]byte{}}
	a.cur.Store(c)
	return a
}

// set installs new credentials and forgets every learnt key.
func (a *authenticator) set(c *credentials) {
	a.cur.Store(c)
	a.cacheMu.Lock()
	clear(a.keyCache)
	a.cacheMu.Unlock()
}

// restKeys returns the long-term keys that REST username u would have under
// each secret in force.
func restKeys(c *credentials, u string) [][]byte {
	keys := make([][]byte, len(c.secrets))
	for i, s := range c.secrets {
		keys[i] = LongTermKey(u, c.realm, RESTPassword(s, u))
	}
	return keys
}

// preverify looks at a raw STUN request before pion handles it. When it is
// signed with a REST user name and several secrets are in force, it finds
// the secret whose key verifies the MESSAGE-INTEGRITY and remembers it for
// the AuthHandler. It costs one HMAC per secret on control messages only.
func (a *authenticator) preverify(raw []byte, src netip.AddrPort) {
	c := a.cur.Load()
	if len(c.secrets) < 2 || !stun.IsMessage(raw) {
		return
	}
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if err := m.Decode(); err != nil || m.Type.Class != stun.ClassRequest || !m.Contains(stun.AttrMessageIntegrity) {
		return
	}
	var un stun.Username
	if un.GetFrom(m) != nil {
		return
	}
	u := un.String()
	if _, _, ok := parseRESTUsername(u); !ok {
		return
	}
	ck := cacheKey{src, u}
	a.cacheMu.Lock()
	cached := a.keyCache[ck]
	a.cacheMu.Unlock()
	if cached != nil && stun.MessageIntegrity(cached).Check(m) == nil {
		return
	}
	for _, k := range restKeys(c, u) {
		if stun.MessageIntegrity(k).Check(m) == nil {
			a.cacheMu.Lock()
			if len(a.keyCache) >= keyCacheMax {
				clear(a.keyCache)
			}
			// A reload may have swapped the credentials meanwhile: only
			// remember keys of the snapshot still in force.
			if a.cur.Load() == c {
				a.keyCache[ck] = k
			}
			a.cacheMu.Unlock()
			return
		}
	}
}

// handle is the turn.AuthHandler. It returns the user ID that quotas and
// accounting use (the user name; for REST credentials the part after the
// expiry) and the long-term key pion checks MESSAGE-INTEGRITY with.
func (a *authenticator) handle(ra *turn.RequestAttributes) (string, []byte, bool) {
	c := a.cur.Load()
	if ra.Realm != c.realm {
		a.fail(authWrongRealm, ra.Username, ra.SrcAddr, ra.Method)
		return "", nil, false
	}
	if exp, user, ok := parseRESTUsername(ra.Username); ok && len(c.secrets) > 0 {
		now := a.now()
		if !now.Before(exp) {
			a.fail(authExpired, ra.Username, ra.SrcAddr, ra.Method)
			return "", nil, false
		}
		if c.maxTTL > 0 && exp.Sub(now) > c.maxTTL {
			a.fail(authExpired, ra.Username, ra.SrcAddr, ra.Method)
			return "", nil, false
		}
		if len(c.secrets) == 1 {
			return user, LongTermKey(ra.Username, c.realm, RESTPassword(c.secrets[0], ra.Username)), true
		}
		src, _ := addrPortOf(ra.SrcAddr)
		a.cacheMu.Lock()
		k, found := a.keyCache[cacheKey{src, ra.Username}]
		a.cacheMu.Unlock()
		if !found {
			// No secret verified this user's message: hand pion the first
			// key, whose check fails and is counted as bad_integrity.
			k = LongTermKey(ra.Username, c.realm, RESTPassword(c.secrets[0], ra.Username))
		}
		return user, k, true
	}
	if k, ok := c.users[ra.Username]; ok {
		return ra.Username, k, true
	}
	a.fail(authUnknownUser, ra.Username, ra.SrcAddr, ra.Method)
	return "", nil, false
}

// keyFor returns the key the AuthHandler would give pion for username in
// realm, without counting or logging (for requests the relay answers
// itself).
func (a *authenticator) keyFor(src netip.AddrPort, username, realm string) ([]byte, bool) {
	c := a.cur.Load()
	if realm != c.realm {
		return nil, false
	}
	if exp, _, ok := parseRESTUsername(username); ok && len(c.secrets) > 0 {
		if !a.now().Before(exp) {
			return nil, false
		}
		if len(c.secrets) == 1 {
			return LongTermKey(username, c.realm, RESTPassword(c.secrets[0], username)), true
		}
		a.cacheMu.Lock()
		k, found := a.keyCache[cacheKey{src, username}]
		a.cacheMu.Unlock()
		return k, found
	}
	k, ok := c.users[username]
	return k, ok
}

// onAuth receives pion's verdict after the integrity check; a false verdict
// after handle said yes is a wrong password.
func (a *authenticator) onAuth(src, _ net.Addr, _, username, _ string, method string, verdict bool) {
	if !verdict {
		a.failMethod(authBadIntegrity, username, src, method)
	}
}

func (a *authenticator) fail(reason, username string, src net.Addr, method stun.Method) {
	a.failMethod(reason, username, src, method.String())
}

func (a *authenticator) failMethod(reason, username string, src net.Addr, method string) {
	a.metrics.authFail.WithLabelValues(reason).Inc()
	if len(username) > 64 {
		username = username[:64] + "..."
	}
	if a.logRate.allow() {
		a.log.Warn("TURN authentication failed", "reason", reason, "username", username,
			"client", addrString(src), "method", method)
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// rateGate lets through at most n events per period, for log lines that a
// client could otherwise trigger at line rate. Safe for concurrent use.
type rateGate struct {
	n      int
	period time.Duration

	mu     sync.Mutex
	start  time.Time
	count  int
	missed uint64
}

func newRateGate(n int, period time.Duration) *rateGate { return &rateGate{n: n, period: period} }

func (g *rateGate) allow() bool {
	ok, _ := g.take()
	return ok
}

// take is allow that also returns how many events were refused since the
// last one let through, for a "suppressed" attribute.
func (g *rateGate) take() (bool, uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	if now.Sub(g.start) >= g.period {
		g.start, g.count = now, 0
	}
	g.count++
	if g.count > g.n {
		g.missed++
		return false, 0
	}
	missed := g.missed
	g.missed = 0
	return true, missed
}
