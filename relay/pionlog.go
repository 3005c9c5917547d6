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
// the relay logs and counts what matters itself. pion's errors go to Warn,
// at most a few per second.
type pionLogs struct {
	log  *slog.Logger
	gate *rateGate
}

func newPionLogs(log *slog.Logger) *pionLogs {
	return &pionLogs{log: log.With("source", "pion"), gate: newRateGate(5, time.Second)}
}

// NewLogger implements logging.LoggerFactory.
func (f *pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return &pionLogger{f: f, scope: scope}
}

type pionLogger struct {
	f     *pionLogs
	scope string
}

func (l *pionLogger) debug(msg string) {
	if l.f.log.Enabled(context.Background(), slog.LevelDebug) {
		l.f.log.Debug(msg, "scope", l.scope)
	}
}

func (l *pionLogger) debugf(format string, args ...any) {
	if l.f.log.Enabled(context.Background(), slog.LevelDebug) {
		l.f.log.Debug(fmt.Sprintf(format, args...), "scope", l.scope)
	}
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
