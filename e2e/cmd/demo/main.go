//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mediaedge/mediaedge/e2e"
)

const topology = `
  client 10.20.0.10 ── lan0 [ EDGE: mediaedge ] wan0 198.51.100.2 ──── internet
         fd20::10                 vpn0          2001:db8:100::2       52.112.0.10, 2603:1063::10  cloud media server (Teams)
                                   │ (full-tunnel default routes)      192.0.2.80, 2001:db8:80::80 other cloud host
                         VPN concentrator ── 203.0.113.2 ──────────   192.0.2.200  a media range published later
                         corporate host 10.99.0.1, fd99::1
`

var binFlag = flag.String("bin", "bin/mediaedge", "mediaedge binary to run on the edge")

func main() {
	os.Exit(run())
}

func run() int {
	bin := binFlag
	keep := flag.Bool("keep", false, "keep the work directory (configuration, daemon log, captures)")
	hold := flag.Bool("hold", false, "before stopping mediaedge, wait for Enter so that you can look around the namespaces")
	sysctlFile := flag.String("sysctl", "systemd/mediaedge.sysctl", "sysctl.d file applied to the edge namespace, as on an installed edge (empty: none)")
	window := flag.Duration("window", 3*time.Second, "how long audio is measured and captured on the uplink")
	flag.Parse()

	if _, err := os.Stat(*bin); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v (run `make build` or pass -bin)\n", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		first := true
		for sig := range sigs {
			if first {
				fmt.Fprintf(os.Stderr, "\ndemo: %v: stopping and cleaning up (bounded to 30 s)\n", sig)
				cancel()
				first = false
				continue
			}
			fmt.Fprintf(os.Stderr, "demo: %v: still cleaning up, please wait\n", sig)
		}
	}()

	fmt.Println("mediaedge end-to-end demo: a branch office in network namespaces")
	fmt.Print(topology)
	fmt.Println()
	opt := e2e.Options{
		Prefix:      "medemo",
		Bin:         *bin,
		EdgeSysctl:  *sysctlFile,
		KeepWorkDir: *keep,
		Progress:    os.Stdout,
		MediaWindow: *window,
		OnCheck: func(c e2e.Check) {
			e2e.WriteCheck(os.Stdout, c)
			fmt.Println()
		},
	}
	if *hold {
		opt.Hold = waitForEnter
	}
	res, err := e2e.Run(ctx, opt)
	switch {
	case errors.Is(err, e2e.ErrNotRoot), errors.Is(err, e2e.ErrMissingTool):
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 2
	case res == nil:
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	fmt.Println()
	e2e.WriteSummary(os.Stdout, res)
	interrupted := errors.Is(err, context.Canceled)
	switch {
	case interrupted:
		fmt.Println("Interrupted.")
	case err != nil:
		fmt.Printf("The scenario stopped early: %v\n", err)
	}
	if !interrupted && !res.Passed() && res.DaemonLog != "" {
		fmt.Printf("\nLast lines of mediaedge's log:\n%s\n", res.DaemonLog)
	}
	if *keep {
		fmt.Printf("Configuration, daemon log and captures kept in %s\n", res.WorkDir)
	}
	fmt.Println("Every namespace and process the demo made has been removed.")
	if err != nil || !res.Passed() {
		return 1
	}
	return 0
}

// waitForEnter holds the scenario before SIGTERM until Enter (or a signal).
func waitForEnter(ctx context.Context, t *e2e.Topology, dir string) {
	sock := filepath.Join(dir, "control.sock")
	fmt.Printf(`
Holding before SIGTERM, with the call running. In another terminal, for example:
  ip netns exec %[1]s ip rule
  ip netns exec %[1]s ip route show table 100
  ip netns exec %[1]s ip route get 52.112.0.10 from 10.20.0.10 iif lan0 ipproto udp dport 3480
  ip netns exec %[1]s tcpdump -ni wan0 udp
  ip netns exec %[1]s ip -s link show wan0
  %[2]s --control %[3]s session list
  %[2]s --control %[3]s turn allocations
The configuration and the daemon's log are in %[4]s.
Press Enter to continue.
`, t.Edge.Name, *binFlag, sock, dir)
	done := make(chan struct{})
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
