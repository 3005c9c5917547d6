package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/mediaedge/mediaedge/daemon"
	"github.com/mediaedge/mediaedge/internal/config"
	"github.com/mediaedge/mediaedge/internal/gctune"
	"github.com/mediaedge/mediaedge/internal/logging"
)

func newRunCmd() *cobra.Command {
	var (
		path          string
		drain         time.Duration
		startTime     time.Duration
		reloadTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon in the foreground",
		Long: `Run the daemon in the foreground with the configuration FILE, or with the
embedded default (loopback only, policy in plan mode) when --config is not
given.

Signals: SIGHUP reloads the configuration file (an invalid file is refused
and the daemon keeps running on the previous one; a reload that takes longer
than --reload-timeout is logged at error, and signals are handled meanwhile);
SIGTERM and SIGINT stop it gracefully within --drain, whatever a reload
is doing. Under systemd (Type=notify) it reports
READY=1, RELOADING=1, STOPPING=1 and, with WatchdogSec=, WATCHDOG=1.`,
		Example: `  mediaedge run
  mediaedge run --config /etc/mediaedge/mediaedge.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDaemon(cmd.Context(), runOptions{path: path, drain: drain, startTimeout: startTime,
				reloadTimeout: reloadTimeout}, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "configuration file (default: the embedded default)")
	cmd.Flags().DurationVar(&drain, "drain", 10*time.Second, "longest graceful shutdown before the daemon stops anyway")
	cmd.Flags().DurationVar(&startTime, "start-timeout", 60*time.Second, "longest start-up before the daemon gives up")
	cmd.Flags().DurationVar(&reloadTimeout, "reload-timeout", 30*time.Second, "longest reload before it is logged as stuck")
	return cmd
}

// notify sends a state to systemd when NOTIFY_SOCKET is set; elsewhere it
// does nothing.
func notify(log *slog.Logger, state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		log.Warn("systemd notification failed", "err", err)
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants it.
func monotonicUsec() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "0"
	}
	return strconv.FormatInt(ts.Nano()/1000, 10)
}

// runOptions are the flags of run.
type runOptions struct {
	path          string
	drain         time.Duration
	startTimeout  time.Duration
	reloadTimeout time.Duration
}

func runDaemon(ctx context.Context, o runOptions, stdout, stderr io.Writer) error {
	path, drain, startTimeout := o.path, o.drain, o.startTimeout
	// The collection target (50 instead of Go's 100: the packet paths
	// allocate nothing) and the return of freed pages after bursts; GOGC
	// or GOMEMLIMIT in the environment leaves both to the runtime.
	if gctune.Apply(os.LookupEnv) {
		rel := gctune.NewReleaser()
		rel.Start()
		defer rel.Close()
	}
	cfg, err := daemon.Load(path, config.Options{})
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			name := path
			if name == "" {
				name = "embedded default"
			}
			for _, p := range ps {
				fmt.Fprintf(stderr, "%s: %s\n", name, p)
			}
			return &exitError{code: 2, err: fmt.Errorf("configuration has %d problem(s)", len(ps))}
		}
		return &exitError{code: 2, err: err}
	}
	lv := new(slog.LevelVar)
	log := logging.New(stderr, cfg.Log, lv, logging.StderrIsJournal())

	// Signals are subscribed before start-up so that a SIGTERM sent while
	// starting is not lost (and does not kill the process half-configured).
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	d, err := daemon.New(cfg, daemon.Options{Logger: log, LevelVar: lv, Console: stdout,
		OnDrain: func(st daemon.DrainStatus) {
			notify(log, fmt.Sprintf("STATUS=draining: %d allocation(s), %d session(s) left; stopping by %s",
				st.Allocations, st.Sessions, st.Deadline.UTC().Format(time.RFC3339)))
		}})
	if err != nil {
		return err
	}
	source := path
	if source == "" {
		source = "embedded default"
	}
	log.Info("starting", "config", source, "pid", os.Getpid())
	startCtx, cancel := context.WithTimeout(ctx, startTimeout)
	err = d.Start(startCtx)
	cancel()
	if err != nil {
		log.Error("start-up failed; stopping", "err", err)
		stopCtx, cancel := context.WithTimeout(context.Background(), drain)
		_ = d.Close(stopCtx)
		cancel()
		return err
	}
	notify(log, "READY=1\nSTATUS=running\nMAINPID="+strconv.Itoa(os.Getpid()))
	log.Info("ready")
	if user, password := d.TrialUser(); user != "" || cfg.Trial {
		pwFile := ""
		// Only the trial keeps the password in a file (for the banner's
		// bench command); a configuration file's generated user is shown
		// once, on the console.
		if user != "" && cfg.Trial {
			pwFile = trialPasswordFile(cfg, user)
			remove, err := writeTrialPassword(pwFile, password)
			if err != nil {
				log.Warn("could not write the trial password file", "file", pwFile, "err", err)
				pwFile = ""
			}
			defer remove()
		}
		metricsAddr := ""
		if a := d.MetricsAddr(); a != nil {
			metricsAddr = a.String()
		}
		printBanner(stdout, cfg, user, password, pwFile, metricsAddr)
	}

	var watchdog <-chan time.Time
	if iv, err := sd.SdWatchdogEnabled(false); err == nil && iv > 0 {
		t := time.NewTicker(iv / 2)
		defer t.Stop()
		watchdog = t.C
		log.Info("systemd watchdog enabled", "interval", iv.String())
	}

	// A reload runs beside the signal loop, so that one stuck on a file
	// (a FIFO as configuration file, a hung network file system) never
	// keeps SIGTERM from stopping the daemon. SIGHUPs that arrive during a
	// reload are folded into one more reload after it.
	var (
		reloading   chan struct{} // closed when the running reload ends; nil: none
		reloadLate  <-chan time.Time
		reloadAgain bool
	)
	startReload := func() {
		done := make(chan struct{})
		reloading = done
		reloadLate = time.After(o.reloadTimeout)
		go func() {
			defer close(done)
			reload(ctx, log, d, path)
		}()
	}
	for {
		select {
		case <-watchdog:
			notify(log, "WATCHDOG=1")
		case <-reloading:
			reloading, reloadLate = nil, nil
			if reloadAgain {
				reloadAgain = false
				startReload()
			}
		case <-reloadLate:
			reloadLate = nil
			log.Error("reload still running; the daemon keeps serving on the previous configuration and handles signals",
				"file", path, "timeout", o.reloadTimeout.String())
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				if reloading != nil {
					reloadAgain = true
					log.Info("reload: another one is running; reloading again after it")
					continue
				}
				startReload()
			default:
				return shutdown(log, d, sigs, sig, drain, reloading)
			}
		case <-d.Drained():
			return shutdown(log, d, sigs, nil, drain, reloading)
		case <-ctx.Done():
			return shutdown(log, d, sigs, nil, drain, reloading)
		}
	}
}

func reload(ctx context.Context, log *slog.Logger, d *daemon.Daemon, path string) {
	notify(log, "RELOADING=1\nMONOTONIC_USEC="+monotonicUsec()+"\nSTATUS=reloading")
	defer notify(log, "READY=1\nSTATUS=running")
	if path == "" {
		log.Info("reload: running on the embedded default; nothing to re-read")
		return
	}
	cfg, err := daemon.Load(path, config.Options{})
	if err != nil {
		var ps config.Problems
		if errors.As(err, &ps) {
			for _, p := range ps {
				log.Error("reload refused: configuration invalid; keeping the running configuration", "file", path, "problem", p.String())
			}
		} else {
			log.Error("reload refused; keeping the running configuration", "file", path, "err", err)
		}
		d.RecordReloadFailure(err)
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := d.Reload(rctx, cfg); err != nil {
		log.Warn("reload applied with errors", "file", path, "err", err)
		return
	}
	log.Info("reload applied", "file", path)
}

// shutdownGrace is how long after the drain time the daemon waits for its
// components before it exits anyway.
const shutdownGrace = time.Second

// shutdown stops the daemon within drain (plus shutdownGrace): it waits for
// a running reload up to the drain deadline, closes the components, and
// exits anyway once the time is up or a second SIGTERM/SIGINT arrives.
func shutdown(log *slog.Logger, d *daemon.Daemon, sigs <-chan os.Signal, sig os.Signal, drain time.Duration, reloading <-chan struct{}) error {
	notify(log, "STOPPING=1\nSTATUS=stopping")
	name := "context cancelled"
	select {
	case <-d.Drained():
		name = "drain complete"
	default:
	}
	if sig != nil {
		name = sig.String()
	}
	log.Info("stopping", "signal", name, "drain", drain.String())
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		if reloading != nil {
			// Reload and Close must not overlap; a reload stuck past the
			// drain deadline is abandoned.
			select {
			case <-reloading:
			case <-ctx.Done():
				log.Error("reload still running at shutdown; stopping without waiting for it")
			}
		}
		done <- d.Close(ctx)
	}()
	hard := time.NewTimer(drain + shutdownGrace)
	defer hard.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				log.Error("stopped with errors", "err", err)
				return err
			}
			log.Info("stopped")
			return nil
		case <-hard.C:
			log.Error("components did not stop within the drain time; exiting anyway", "drain", drain.String())
			return &exitError{code: 1, err: errors.New("shutdown exceeded the drain time")}
		case s := <-sigs:
			if s == syscall.SIGHUP {
				continue // a reload during shutdown is moot
			}
			log.Warn("second signal during shutdown; exiting without waiting", "signal", s.String())
			return &exitError{code: 1, err: errors.New("interrupted during shutdown")}
		}
	}
}
