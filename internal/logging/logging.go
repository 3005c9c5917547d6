// Package logging builds mediaedge's log/slog logger: text or JSON, a level
// from the configuration, and syslog priority prefixes ("<3>") when standard
// error is connected to the systemd journal, so journalctl shows real
// priorities and `journalctl -p warning` works.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/mediaedge/mediaedge/internal/config"
)

// Config is the `log` section of the configuration.
type Config struct {
	// Level is the lowest level logged: debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// DefaultConfig returns the defaults: info, text.
func DefaultConfig() Config { return Config{Level: "info", Format: "text"} }

// Validate implements config.Validator.
func (c *Config) Validate() error {
	var ps config.Problems
	if _, err := ParseLevel(c.Level); err != nil {
		ps.AddErr("level", err)
	}
	switch c.Format {
	case "text", "json":
	default:
		ps.Add("format", "%q is not text or json", c.Format)
	}
	return ps.Err()
}

// ParseLevel parses debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not one of debug, info, warn, error", s)
}

// New returns a logger writing to w. The level is held in lv so a reload can
// change it. journal adds priority prefixes.
func New(w io.Writer, c Config, lv *slog.LevelVar, journal bool) *slog.Logger {
	l, err := ParseLevel(c.Level)
	if err != nil {
		l = slog.LevelInfo
	}
	lv.Set(l)
	opts := &slog.HandlerOptions{Level: lv}
	var out io.Writer = w
	var pw *prefixWriter
	if journal {
		pw = &prefixWriter{w: w}
		out = pw
		// The journal stamps every line itself.
		opts.ReplaceAttr = dropTime
	}
	var h slog.Handler
	if c.Format == "json" {
		h = slog.NewJSONHandler(out, opts)
	} else {
		h = slog.NewTextHandler(out, opts)
	}
	if pw != nil {
		h = &journalHandler{inner: h, pw: pw, mu: &sync.Mutex{}}
	}
	return slog.New(h)
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// StderrIsJournal reports whether standard error is the systemd journal:
// systemd sets $JOURNAL_STREAM to "device:inode" of the stream it connected.
func StderrIsJournal() bool {
	js := os.Getenv("JOURNAL_STREAM")
	if js == "" {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(os.Stderr.Fd()), &st); err != nil {
		return false
	}
	return js == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// journalHandler writes "<N>" before each record, N being the syslog
// priority of the record's level.
type journalHandler struct {
	inner slog.Handler
	pw    *prefixWriter
	mu    *sync.Mutex // shared by handlers derived with WithAttrs/WithGroup
}

func (h *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pw.prio = priority(r.Level)
	return h.inner.Handle(ctx, r)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &journalHandler{inner: h.inner.WithAttrs(as), pw: h.pw, mu: h.mu}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{inner: h.inner.WithGroup(name), pw: h.pw, mu: h.mu}
}

func priority(l slog.Level) byte {
	switch {
	case l >= slog.LevelError:
		return '3'
	case l >= slog.LevelWarn:
		return '4'
	case l >= slog.LevelInfo:
		return '6'
	}
	return '7'
}

type prefixWriter struct {
	w    io.Writer
	prio byte
	buf  []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(append(p.buf[:0], '<', p.prio, '>'), b...)
	if _, err := p.w.Write(p.buf); err != nil {
		return 0, err
	}
	return len(b), nil
}
