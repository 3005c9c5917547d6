package testutil

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"testing"
)

// SyncBuffer is a log sink safe for concurrent use by the goroutines of the
// code under test. The zero value is ready; it holds everything written
// until the test ends.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// LogWriter returns a writer that sends each write, without its trailing
// newline, to t.Log. It must not be used after the test ends.
func LogWriter(t testing.TB) io.Writer { return logWriter{t} }

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
