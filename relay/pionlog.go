package relay

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/pion/logging"
)

// pionLogs routes pion's logs to slog. pion logs per-request events at Info
// and Warn (a refused permission, a failed ChannelBind, data without a
// permission) that any client can trigger at will, so those go to Debug;
// the relay logs and counts what matters itself. pion also logs at Debug
// per datagram (a junk flood at debug level wrote 340 MB in two minutes),
// so its debug lines pass at most debugLinesPerSecond a second, the next
// one saying how many were suppressed. pion's errors go to Warn, at most a
// few per second.
type pionLogs struct {
	log   *slog.Logger
	gate  *rateGate
	debug *rateGate
}

// debugLinesPerSecond bounds pion's debug lines.
const debugLinesPerSecond = 50

func newPionLogs(log *slog.Logger) *pionLogs {
	return &pionLogs{log: log.With("source", "pion"), gate: newRateGate(5, time.Second),
		debug: newRateGate(debugLinesPerSecond, time.Second)}
}

// NewLogger implements logging.LoggerFactory.
func (f *pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return &pionLogger{f: f, scope: scope}
}

type pionLogger struct {
	f     *pionLogs
	scope string
}

// debugOK reports whether a debug line may be written, and how many were
// suppressed before it.
func (l *pionLogger) debugOK() (bool, uint64) {
	if !l.f.log.Enabled(context.Background(), slog.LevelDebug) {
		return false, 0
	}
	return l.f.debug.take()
}

func (l *pionLogger) debug(msg string) {
	if ok, missed := l.debugOK(); ok {
		l.write(msg, missed)
	}
}

func (l *pionLogger) debugf(format string, args ...any) {
	if ok, missed := l.debugOK(); ok {
		l.write(fmt.Sprintf(format, args...), missed)
	}
}

func (l *pionLogger) write(msg string, missed uint64) {
	if missed > 0 {
		l.f.log.Debug(msg, "scope", l.scope, "suppressed", missed)
		return
	}
	l.f.log.Debug(msg, "scope", l.scope)
}

func (l *pionLogger) Trace(msg string)                  {}
func (l *pionLogger) Tracef(format string, args ...any) {}
func (l *pionLogger) Debug(msg string)                  { l.debug(msg) }
func (l *pionLogger) Debugf(format string, args ...any) { l.debugf(format, args...) }
func (l *pionLogger) Info(msg string)                   { l.debug(msg) }
func (l *pionLogger) Infof(format string, args ...any)  { l.debugf(format, args...) }
func (l *pionLogger) Warn(msg string)                   { l.debug(msg) }
func (l *pionLogger) Warnf(format string, args ...any)  { l.debugf(format, args...) }
func (l *pionLogger) Error(msg string)                  { l.error(msg) }
func (l *pionLogger) Errorf(format string, args ...any) { l.error(fmt.Sprintf(format, args...)) }

func (l *pionLogger) error(msg string) {
	if l.f.gate.allow() {
		l.f.log.Warn("pion/turn error", "scope", l.scope, "detail", msg)
	}
}
