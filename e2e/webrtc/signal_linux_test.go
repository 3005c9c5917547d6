package webrtc

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

//go:embed testdata/page.html
var pageHTML []byte

// pageStats is what the page reads from getStats (see stats() in
// page.html).
type pageStats struct {
	ICE        string `json:"ice"`
	Conn       string `json:"conn"`
	DTLS       string `json:"dtls"`
	DTLSRole   string `json:"dtlsRole"`
	SRTPCipher string `json:"srtpCipher"`
	DTLSCipher string `json:"dtlsCipher"`
	TLSVersion string `json:"tlsVersion"`
	Pair       *struct {
		State     string `json:"state"`
		Nominated bool   `json:"nominated"`
		Local     string `json:"local"`
		Remote    string `json:"remote"`
	} `json:"pair"`
	InPackets  int64  `json:"inPackets"`
	InBytes    int64  `json:"inBytes"`
	InLost     int64  `json:"inLost"`
	InCodec    string `json:"inCodec"`
	OutPackets int64  `json:"outPackets"`
	OutBytes   int64  `json:"outBytes"`
	OutCodec   string `json:"outCodec"`
	// Transports counts the transports (one with BUNDLE).
	Transports     int    `json:"transports"`
	VideoInFrames  int64  `json:"videoInFrames"`
	VideoInWidth   int    `json:"videoInWidth"`
	VideoInHeight  int    `json:"videoInHeight"`
	VideoInCodec   string `json:"videoInCodec"`
	VideoOutFrames int64  `json:"videoOutFrames"`
	VideoOutCodec  string `json:"videoOutCodec"`
}

// pageBlock is one block of received audio as the page measured it.
type pageBlock struct {
	P   float64 `json:"p"`   // purity at the SDES side's tone
	RMS float64 `json:"rms"` // full scale = 1
	Own float64 `json:"own"` // purity at the page's own tone
}

// signal is the page's signalling endpoint: the page POSTs its offer,
// long-polls for the answer and reports what it hears. The test owns it;
// its HTTP server stops when the test ends. Its methods are safe for
// concurrent use.
type signal struct {
	t             testing.TB
	url           string
	toneHz, ownHz float64

	offer  chan string // the page's offers: the first, and one per restart
	answer chan string // the test's answers

	mu      sync.Mutex
	heard   *toneTrack // fed by every report
	stats   pageStats  // the latest
	reports int
	failure string // the page's uncaught error
	stop    bool   // tell the page to stop reporting
	restart bool   // tell the page to restart ICE (once)
	done    bool   // the page stopped
}

// serveSignal starts the page's HTTP server on 127.0.0.1. The page
// listens for toneHz and knows its own microphone plays ownHz.
func serveSignal(t testing.TB, toneHz, ownHz float64) *signal {
	t.Helper()
	s := &signal{t: t, toneHz: toneHz, ownHz: ownHz, offer: make(chan string, 2), answer: make(chan string, 2)}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "text/html; charset=utf-8")
		w.Write(pageHTML)
	})
	mux.HandleFunc("POST /offer", s.handleOffer)
	mux.HandleFunc("GET /answer", s.handleAnswer)
	mux.HandleFunc("POST /report", s.handleReport)
	mux.HandleFunc("POST /log", s.handleLog)
	mux.HandleFunc("POST /fail", s.handleFail)
	mux.HandleFunc("POST /done", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.done = true
		s.mu.Unlock()
		io.WriteString(w, "{}")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
		<-served
	})
	s.url = fmt.Sprintf("http://%s/?tone=%v&own=%v", ln.Addr(), toneHz, ownHz)
	return s
}

func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(v); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func (s *signal) handleOffer(w http.ResponseWriter, r *http.Request) {
	var m struct{ SDP string }
	if !decodeJSON(w, r, &m) {
		return
	}
	select {
	case s.offer <- m.SDP:
		io.WriteString(w, "{}")
	default:
		http.Error(w, "too many offers", http.StatusConflict)
	}
}

// handleAnswer holds the page's request up to 10 s for the answer; 204
// tells the page to ask again.
func (s *signal) handleAnswer(w http.ResponseWriter, r *http.Request) {
	select {
	case a := <-s.answer:
		w.Header().Set("content-type", "application/sdp")
		io.WriteString(w, a)
	case <-time.After(10 * time.Second):
		w.WriteHeader(http.StatusNoContent)
	case <-r.Context().Done():
	}
}

func (s *signal) handleReport(w http.ResponseWriter, r *http.Request) {
	var m struct {
		BlockSecs float64     `json:"blockSecs"`
		Blocks    []pageBlock `json:"blocks"`
		Stats     pageStats   `json:"stats"`
	}
	if !decodeJSON(w, r, &m) {
		return
	}
	s.mu.Lock()
	if s.heard == nil && m.BlockSecs > 0 {
		s.heard = newToneTrack(0, s.toneHz, s.ownHz, m.BlockSecs)
	}
	for _, b := range m.Blocks {
		s.heard.addMeasured(b.P, b.RMS, func() float64 { return b.Own })
	}
	s.stats = m.Stats
	s.reports++
	reply := map[string]bool{"stop": s.stop, "restart": s.restart}
	s.mu.Unlock()
	json.NewEncoder(w).Encode(reply)
}

func (s *signal) handleLog(w http.ResponseWriter, r *http.Request) {
	var m struct{ Msg string }
	if decodeJSON(w, r, &m) {
		s.t.Logf("page: %s", m.Msg)
		io.WriteString(w, "{}")
	}
}

func (s *signal) handleFail(w http.ResponseWriter, r *http.Request) {
	var m struct{ Error string }
	if decodeJSON(w, r, &m) {
		s.mu.Lock()
		s.failure = m.Error
		s.mu.Unlock()
		s.t.Logf("page failed: %s", m.Error)
		io.WriteString(w, "{}")
	}
}

// errPage is the page's own failure, reported through /fail.
var errPage = errors.New("the page failed")

// pageFailed returns the page's failure, if it reported one.
func (s *signal) pageFailed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failure != "" {
		return fmt.Errorf("%w: %s", errPage, strings.TrimSpace(s.failure))
	}
	return nil
}

// waitOffer returns the page's offer, or fails t after d, when the page
// reports a failure, or when gone (the browser's exit; nil: never) is
// closed.
func (s *signal) waitOffer(d time.Duration, gone <-chan struct{}) string {
	s.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case o := <-s.offer:
			return o
		case <-deadline:
			s.t.Fatalf("no offer from the page within %v (page error: %v)", d, s.pageFailed())
		case <-gone:
			s.t.Fatal("the browser exited before the page offered")
		case <-time.After(100 * time.Millisecond):
			if err := s.pageFailed(); err != nil {
				s.t.Fatal(err)
			}
		}
	}
}

// sendAnswer hands the answer to the page's long poll.
func (s *signal) sendAnswer(sdp string) { s.answer <- sdp }

// snapshot returns the latest stats and a copy of what the page heard.
func (s *signal) snapshot() (pageStats, toneTrack, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var h toneTrack
	if s.heard != nil {
		h = *s.heard
	}
	return s.stats, h, s.reports
}

// restartICE asks the page to restart ICE: its next offer arrives through
// waitOffer.
func (s *signal) restartICE() {
	s.mu.Lock()
	s.restart = true
	s.mu.Unlock()
}

// stopPage tells the page to stop reporting and waits up to d for it to
// close its peer connection.
func (s *signal) stopPage(d time.Duration) {
	s.mu.Lock()
	s.stop = true
	s.mu.Unlock()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		done := s.done || s.failure != ""
		s.mu.Unlock()
		if done {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
