package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mediaedge/mediaedge/internal/component"
	"github.com/mediaedge/mediaedge/internal/control"
)

// apiGateway starts a gateway with its routes on a control server that
// tests call with ServeHTTP.
func apiGateway(t testing.TB, cfg Config) (*Gateway, *control.Server) {
	t.Helper()
	srv := control.NewServer(nil, nil)
	g, err := New(cfg, component.Deps{Registry: prometheus.NewRegistry(), Control: srv})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g, srv
}

// call sends a request and returns the status and body.
func do(t testing.TB, srv *control.Server, method, path, body string) (int, []byte) {
	t.Helper()
	var r *http.Request
	if body != "" {
		r = httptest.NewRequest(method, path, strings.NewReader(body))
	} else {
		r = httptest.NewRequest(method, path, nil)
	}
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, r)
	return w.Code, w.Body.Bytes()
}

func errCode(t testing.TB, body []byte) string {
	t.Helper()
	var e control.ErrorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e.Error.Code
}

func TestControlAPI(t *testing.T) {
	_, srv := apiGateway(t, testConfig())
	kInt, kCloud := newKeyLine(t, suiteAES128SHA80), newKeyLine(t, suiteAEAD256)
	body, _ := json.Marshal(CreateRequest{ID: "call-1",
		Internal: LegRequest{Crypto: strings.TrimPrefix(kInt, "a="), RTCPMux: true},
		Cloud:    LegRequest{Crypto: kCloud, Remote: "127.0.0.1:9", Suite: "AES_256_CM_HMAC_SHA1_80", MKI: true, KeyLifetime: 1 << 20}})
	code, out := do(t, srv, "POST", "/v1/sessions", string(body))
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, out)
	}
	var s SessionInfo
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatal(err)
	}
	if s.ID != "call-1" || !strings.HasPrefix(s.Internal.Crypto, "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:") ||
		!strings.HasPrefix(s.Cloud.Crypto, "a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:") || !strings.HasSuffix(s.Cloud.Crypto, "|2^20|1:1") {
		t.Fatalf("create answer: %s", out)
	}
	if s.Internal.Local == "" || s.Internal.Local != s.Internal.LocalRTCP || s.Cloud.Local == s.Cloud.LocalRTCP {
		t.Errorf("local addresses: internal %s/%s cloud %s/%s", s.Internal.Local, s.Internal.LocalRTCP, s.Cloud.Local, s.Cloud.LocalRTCP)
	}
	for _, k := range []string{s.Internal.Crypto, s.Cloud.Crypto} {
		if strings.Contains(k, strings.TrimPrefix(kInt, "a=crypto:1 AES_CM_128_HMAC_SHA1_80 ")) {
			t.Fatal("the gateway handed out the peer's key")
		}
	}

	for _, p := range []string{"/v1/sessions", "/v1/sessions/call-1"} {
		code, out := do(t, srv, "GET", p, "")
		if code != http.StatusOK || bytes.Contains(out, []byte("inline:")) {
			t.Errorf("GET %s: %d, keys present: %v", p, code, bytes.Contains(out, []byte("inline:")))
		}
	}

	code, out = do(t, srv, "POST", "/v1/sessions/call-1/rekey", `{"leg":"cloud"}`)
	var rk RekeyResult
	if code != http.StatusOK || json.Unmarshal(out, &rk) != nil || rk.KeyEpoch != 2 || rk.Leg != "cloud" ||
		!strings.HasSuffix(rk.Crypto, "|2^20|2:1") || rk.Crypto == s.Cloud.Crypto {
		t.Fatalf("rekey: %d %s", code, out)
	}
	code, out = do(t, srv, "PATCH", "/v1/sessions/call-1", `{"internal":{"remote":"127.0.0.1:7"},"cloud":{"crypto":"`+newKeyLine(t, suiteAES128SHA32)+`"}}`)
	if code != http.StatusOK || !strings.Contains(string(out), `"remote": "127.0.0.1:7"`) || bytes.Contains(out, []byte("inline:")) {
		t.Fatalf("patch: %d %s", code, out)
	}

	bad := "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key28
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"duplicate id", "POST", "/v1/sessions", string(body), 409, control.CodeConflict},
		{"short key", "POST", "/v1/sessions", `{"internal":{"crypto":"` + bad + `"},"cloud":{"crypto":"` + kCloud + `"}}`, 400, control.CodeBadRequest},
		{"unknown field", "POST", "/v1/sessions", `{"internal":{"crypto":"x","color":1}}`, 400, control.CodeBadRequest},
		{"not json", "POST", "/v1/sessions", `{`, 400, control.CodeBadRequest},
		{"rekey bad leg", "POST", "/v1/sessions/call-1/rekey", `{"leg":"both"}`, 400, control.CodeBadRequest},
		{"rekey unknown", "POST", "/v1/sessions/nope/rekey", `{"leg":"cloud"}`, 404, control.CodeNotFound},
		{"patch nothing", "PATCH", "/v1/sessions/call-1", `{}`, 400, control.CodeBadRequest},
		{"patch bad key", "PATCH", "/v1/sessions/call-1", `{"cloud":{"crypto":"` + bad + `"}}`, 400, control.CodeBadRequest},
		{"patch mux rtcp", "PATCH", "/v1/sessions/call-1", `{"internal":{"remote_rtcp":"127.0.0.1:99"}}`, 400, control.CodeBadRequest},
		{"show unknown", "GET", "/v1/sessions/nope", "", 404, control.CodeNotFound},
		{"events bad wait", "GET", "/v1/gateway/events?wait=1h", "", 400, control.CodeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := do(t, srv, tc.method, tc.path, tc.body)
			if code != tc.status || errCode(t, out) != tc.code {
				t.Fatalf("%d %s, want %d %s", code, out, tc.status, tc.code)
			}
			if strings.Contains(string(out), key28) {
				t.Fatal("an error message contains the key")
			}
		})
	}

	code, out = do(t, srv, "GET", "/v1/gateway/events?since=0", "")
	var evs EventsResponse
	if code != http.StatusOK || json.Unmarshal(out, &evs) != nil {
		t.Fatalf("events: %d %s", code, out)
	}
	var sawRekey bool
	for _, e := range evs.Events {
		if e.Type == EventRekeyed && e.Crypto == rk.Crypto {
			sawRekey = true
		}
	}
	if !sawRekey || evs.Next != evs.Events[len(evs.Events)-1].Seq {
		t.Errorf("events: rekey seen %v, next %d: %s", sawRekey, evs.Next, out)
	}

	if code, out := do(t, srv, "DELETE", "/v1/sessions/call-1", ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", code, out)
	}
	if code, _ := do(t, srv, "DELETE", "/v1/sessions/call-1", ""); code != http.StatusNotFound {
		t.Fatalf("second delete: %d", code)
	}
	// The session's keys are gone from the event log.
	_, out = do(t, srv, "GET", "/v1/gateway/events?since=0", "")
	if bytes.Contains(out, []byte("inline:")) {
		t.Error("the event log still holds keys of an ended session")
	}
}

func TestEventsLongPoll(t *testing.T) {
	g, srv := apiGateway(t, testConfig())
	done := make(chan []byte, 1)
	go func() {
		_, out := do(t, srv, "GET", "/v1/gateway/events?since=0&wait=5s", "")
		done <- out
	}()
	time.Sleep(50 * time.Millisecond)
	mustCreate(t, g, CreateRequest{Internal: LegRequest{Crypto: newKeyLine(t, suiteAES128SHA80)}, Cloud: LegRequest{Crypto: newKeyLine(t, suiteAES128SHA80)}})
	select {
	case out := <-done:
		if !bytes.Contains(out, []byte(EventCreated)) {
			t.Fatalf("long poll answered without the event: %s", out)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("long poll did not return on a new event")
	}
}

// FuzzControlAPI sends arbitrary bodies to the routes that decode JSON:
// the answer is a 2xx or a 4xx/503 error, never a panic or a 500.
func FuzzControlAPI(f *testing.F) {
	k := "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key30
	for _, s := range []string{
		`{"internal":{"crypto":"` + k + `","rtcp_mux":true},"cloud":{"crypto":"a=crypto:1 AEAD_AES_128_GCM inline:` + key28 + `","remote":"127.0.0.1:9"}}`,
		`{"leg":"cloud"}`, `{"cloud":{"remote":"[::1]:5"}}`, `{"id":"x","internal":{}}`, `null`, `[]`, `{"internal":{"key_lifetime":-1}}`,
	} {
		f.Add(s)
	}
	cfg := testConfig()
	cfg.MaxSessions = 20
	g, srv := apiGateway(f, cfg)
	mustCreate(f, g, CreateRequest{ID: "x", Internal: LegRequest{Crypto: newKeyLine(f, suiteAES128SHA80)}, Cloud: LegRequest{Crypto: newKeyLine(f, suiteAES128SHA80)}})
	f.Fuzz(func(t *testing.T, body string) {
		for _, r := range [][2]string{{"POST", "/v1/sessions"}, {"PATCH", "/v1/sessions/x"}, {"POST", "/v1/sessions/x/rekey"}} {
			code, out := do(t, srv, r[0], r[1], body)
			if code >= 500 && code != http.StatusServiceUnavailable {
				t.Fatalf("%s %s: %d %s", r[0], r[1], code, out)
			}
			if code == http.StatusCreated {
				var s SessionInfo
				if json.Unmarshal(out, &s) == nil && s.ID != "x" {
					do(t, srv, "DELETE", "/v1/sessions/"+s.ID, "")
				}
			}
		}
	})
}
