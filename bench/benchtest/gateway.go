package benchtest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
)

// FakeGateway serves the gateway's session API (POST, GET and DELETE
// /v1/sessions) with one Forwarder per session, so that bench's API client
// can be tested before and apart from the real gateway. It is safe for
// concurrent use; Close stops every forwarder.
type FakeGateway struct {
	// Config is copied into every session's forwarder (keys and peers
	// are set per session).
	Config Config

	mu       sync.Mutex
	sessions map[string]*fakeSession
}

type fakeSession struct {
	fwd        *Forwarder
	gInt, gCld Key
}

type legReq struct {
	Remote  string `json:"remote"`
	RTCPMux bool   `json:"rtcp_mux"`
	Crypto  string `json:"crypto"`
	Suite   string `json:"suite"`
}

// ServeHTTP implements the session routes.
func (g *FakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.sessions == nil {
		g.sessions = map[string]*fakeSession{}
	}
	id := strings.TrimPrefix(r.URL.Path, "/v1/sessions/")
	switch {
	case r.Method == "POST" && r.URL.Path == "/v1/sessions":
		var req struct {
			ID       string `json:"id"`
			Internal legReq `json:"internal"`
			Cloud    legReq `json:"cloud"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeErr(w, 400, "bad_request", err.Error())
			return
		}
		if _, dup := g.sessions[req.ID]; dup || req.ID == "" {
			writeErr(w, 409, "conflict", "session exists or has no id")
			return
		}
		kInt, err1 := inlineKey(req.Internal.Crypto)
		kCld, err2 := inlineKey(req.Cloud.Crypto)
		aPeer, err3 := netip.ParseAddrPort(req.Internal.Remote)
		bPeer, err4 := netip.ParseAddrPort(req.Cloud.Remote)
		for _, err := range []error{err1, err2, err3, err4} {
			if err != nil {
				writeErr(w, 400, "bad_request", err.Error())
				return
			}
		}
		s := &fakeSession{gInt: randomKey(), gCld: randomKey()}
		cfg := g.Config
		cfg.KeyA, cfg.KeyB, cfg.KeyRA, cfg.KeyRB = kInt, kCld, s.gInt, s.gCld
		cfg.APeer, cfg.BPeer = aPeer, bPeer
		fwd, err := New(cfg)
		if err != nil {
			writeErr(w, 500, "internal", err.Error())
			return
		}
		s.fwd = fwd
		g.sessions[req.ID] = s
		writeJSON(w, 201, g.view(req.ID, s, true))
	case r.Method == "GET" && id != r.URL.Path:
		s := g.sessions[id]
		if s == nil {
			writeErr(w, 404, "not_found", "no such session")
			return
		}
		writeJSON(w, 200, g.view(id, s, false))
	case r.Method == "DELETE" && id != r.URL.Path:
		s := g.sessions[id]
		if s == nil {
			writeErr(w, 404, "not_found", "no such session")
			return
		}
		s.fwd.Close()
		delete(g.sessions, id)
		w.WriteHeader(204)
	default:
		writeErr(w, 404, "not_found", "no such route")
	}
}

// Len is the number of live sessions.
func (g *FakeGateway) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sessions)
}

// Close stops every session's forwarder.
func (g *FakeGateway) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, s := range g.sessions {
		s.fwd.Close()
		delete(g.sessions, id)
	}
}

func (g *FakeGateway) view(id string, s *fakeSession, keys bool) map[string]any {
	leg := func(local netip.AddrPort, k Key) map[string]any {
		m := map[string]any{"local": local.String(), "local_rtcp": local.String(), "suite": "AES_CM_128_HMAC_SHA1_80",
			"counters": map[string]int64{"packets_out": s.fwd.Forwarded.Load()}}
		if keys {
			m["crypto"] = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.StdEncoding.EncodeToString(k)
		}
		return m
	}
	return map[string]any{"id": id, "internal": leg(s.fwd.A(), s.gInt), "cloud": leg(s.fwd.B(), s.gCld)}
}

func inlineKey(line string) (Key, error) {
	f := strings.Fields(strings.TrimPrefix(line, "a=crypto:"))
	if len(f) < 3 || f[1] != "AES_CM_128_HMAC_SHA1_80" || !strings.HasPrefix(f[2], "inline:") {
		return nil, fmt.Errorf("unsupported crypto line")
	}
	b, err := base64.StdEncoding.DecodeString(strings.SplitN(strings.TrimPrefix(f[2], "inline:"), "|", 2)[0])
	if err != nil || len(b) != 30 {
		return nil, fmt.Errorf("bad inline key")
	}
	return b, nil
}

func randomKey() Key {
	k := make(Key, 30)
	_, _ = rand.Read(k)
	return k
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
