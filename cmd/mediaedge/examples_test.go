package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// Every example a user can copy runs here (STYLE 34): the shell examples of
// README.md and docs/*.md, the Example lines of every command's --help, and
// the commands `mediaedge run`'s banner suggests, against a daemon started
// as `make run` starts it (embedded default, per-user control socket).
//
// The conventions for the Markdown files:
//   - a ```sh block is commands: every line (joined over trailing
//     backslashes) runs; comments are the shell's;
//   - in a ``` or ```console block, lines starting with "$ " are commands
//     and the other lines their output (not compared);
//   - `<!-- example: skip REASON -->` on the line before a fence keeps the
//     block from running; REASON is what the test log says;
//   - other blocks (yaml, json, diagrams, output) are not commands.
//
// The examples run with /bin/sh in a scratch directory holding `pw` (the
// trial user's password), `turn-secret` (a REST shared secret) and
// bin/mediaedge (as in a checkout), with the built binary first on PATH. As root, the daemon and every example run in
// a network namespace of their own (the embedded default binds fixed
// loopback ports other tests on this machine use) and as user nobody, as a
// newcomer would run them; otherwise as the calling user. As root, too, the
// --help examples written with sudo run as root in that namespace (it has
// the uplink wan0 of systemd/mediaedge.yaml), and those that use
// /etc/mediaedge run as root in a mount namespace whose /etc carries, as an
// overlay, the tree `make install` makes; the host's /etc is not touched.

// example is one command a user can copy.
type example struct {
	source string // where it is written: "docs/gateway.md:40", "--help of mediaedge turn"
	cmd    string
	skip   string // why it does not run here; empty: it runs
	root   bool   // "sudo ...": runs as root, in the daemon's namespace only
	etc    bool   // uses /etc/mediaedge: runs as root over a private /etc
}

var exampleSkipRE = regexp.MustCompile(`^<!--\s*example:\s*skip\s+(.*?)\s*-->\s*$`)

// markdownExamples extracts the commands of one Markdown file.
func markdownExamples(t *testing.T, path, name string) []example {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		out     []example
		inBlock bool
		lang    string
		skip    string
		prev    string
		pending string // a command continued over backslashes
		start   int
	)
	lines := strings.Split(string(data), "\n")
	for i, line := range lines {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			if !inBlock {
				inBlock, lang, skip = true, strings.TrimSpace(strings.TrimPrefix(trimmed, "```")), ""
				if m := exampleSkipRE.FindStringSubmatch(strings.TrimSpace(prev)); m != nil {
					skip = m[1]
				}
			} else {
				inBlock = false
			}
			prev = line
			continue
		}
		prev = line
		if !inBlock {
			continue
		}
		var cmd string
		switch {
		case pending != "":
			cmd = line
		case lang == "sh" || lang == "shell" || lang == "bash":
			if trimmed == "" || strings.HasPrefix(trimmed, "#") {
				continue
			}
			cmd, start = line, i+1
		case lang == "" || lang == "console":
			after, ok := strings.CutPrefix(strings.TrimLeft(line, " "), "$ ")
			if !ok {
				continue
			}
			cmd, start = after, i+1
		default:
			continue
		}
		if c, cont := strings.CutSuffix(strings.TrimRight(cmd, " "), `\`); cont {
			pending += c + " "
			continue
		}
		out = append(out, example{source: fmt.Sprintf("%s:%d", name, start), cmd: strings.TrimSpace(pending + cmd), skip: skip})
		pending = ""
	}
	return out
}

// helpSkips are the --help examples that cannot run against a trial
// daemon, and why. Matched by prefix.
var helpSkips = []struct{ prefix, reason string }{
	{"mediaedge run", "starts a daemon: the test runs `mediaedge run` itself"},
	{"flock /tmp/mediaedge-perf.lock mediaedge bench suite", "the standard benchmark suite takes minutes (make bench)"},
	{"mediaedge bench srtp --gateway --pcap", "needs a capture of a real call"},
	{"mediaedge bench srtp --spec", "needs a peer gateway described by a spec file (docs/bench.md)"},
	{"mediaedge bench srtp --target", "needs a forwarder with fixed keys K1, K2"},
	{"mediaedge bench verify", "needs captures of both sides of a deployed gateway"},
	{"mediaedge policy check 52.112.0.10 --udp 3478 --from 10.20.0.10 --iif lan0", "needs the interface lan0 (the demo's edge, docs/demo.md)"},
	{"mediaedge policy import-m365 endpoints.json", "needs Microsoft's endpoints.json"},
	{"curl ", "fetches from the internet"},
	{"mediaedge bench turn --server 127.0.0.1:3478 --user alice --secret-file", "the trial relay has no REST shared secret (relay.auth.secret_files)"},
	{"mediaedge drain", "stops the daemon: TestDrainWithLiveMedia and TestDrainDeadline run it with live media"},
	{"mediaedge turn kill", "needs live allocations: TestTurnKillAndStatusCLI runs it"},
	{"mediaedge config import-coturn turnserver.conf", "needs a coturn turnserver.conf: TestImportCoturnDebian and TestImportCoturnProduction run it"},
}

// helpExamples extracts the Example lines of every command.
func helpExamples(root *cobra.Command) []example {
	var out []example
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		pending := ""
		for _, line := range strings.Split(c.Example, "\n") {
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			if l, cont := strings.CutSuffix(line, `\`); cont {
				pending += l
				continue
			}
			cmd := pending + line
			pending = ""
			ex := example{source: "--help of " + c.CommandPath(), cmd: cmd}
			ex.root = strings.HasPrefix(cmd, "sudo ")
			ex.etc = strings.Contains(cmd, "/etc/mediaedge/")
			for _, s := range helpSkips {
				if ex.skip == "" && strings.HasPrefix(cmd, s.prefix) {
					ex.skip = s.reason
				}
			}
			out = append(out, ex)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return out
}

// trialDaemon is `mediaedge run` on the embedded default, and how to run
// commands next to it.
type trialDaemon struct {
	cmd    *exec.Cmd
	out    lockedBuffer
	dir    string   // the examples' working directory
	env    []string // the examples' environment
	asUser bool     // root: in the daemon's network namespace, as nobody
	bin    string   // the built mediaedge
	repo   string   // the checkout, for systemd/mediaedge.yaml
}

const nobody = 65534

// etcDirs are the upper and work directories of the overlay that the
// examples using /etc/mediaedge see as /etc.
func (d *trialDaemon) etcDirs() (upper, work string) {
	return filepath.Join(d.dir, "etc-upper"), filepath.Join(d.dir, "etc-work")
}

// resetEtc puts the installed tree into the overlay: the example
// configuration `make install` puts there and the REST secret it names; or,
// bare, an empty /etc/mediaedge (a coturn host about to migrate, where
// import-coturn writes both).
func (d *trialDaemon) resetEtc(t *testing.T, bare bool) {
	t.Helper()
	upper, work := d.etcDirs()
	for _, p := range []string{upper, work} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(upper, "mediaedge"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	if bare {
		return
	}
	cfg, err := os.ReadFile(filepath.Join(d.repo, "systemd/mediaedge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(upper, "mediaedge/mediaedge.yaml"), cfg, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(upper, "mediaedge/turn-secret"), []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// etcCommand returns a shell running line as root in the daemon's network
// namespace and a mount namespace of its own, where /etc is the host's
// with the overlay of resetEtc on top: the host's /etc is not touched.
func (d *trialDaemon) etcCommand(ctx context.Context, line string) *exec.Cmd {
	upper, work := d.etcDirs()
	c := exec.CommandContext(ctx, "nsenter", "--net=/proc/"+strconv.Itoa(d.cmd.Process.Pid)+"/ns/net",
		"unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
		`mount -t overlay overlay -o lowerdir=/etc,upperdir=`+upper+`,workdir=`+work+` /etc && exec /bin/sh -c "$0"`, line)
	c.Dir, c.Env = d.dir, d.env
	return c
}

// command returns a shell running line as the examples run; root keeps
// root's identity (still in the daemon's network namespace).
func (d *trialDaemon) command(ctx context.Context, line string, root bool) *exec.Cmd {
	var c *exec.Cmd
	if d.asUser && root {
		c = exec.CommandContext(ctx, "nsenter", "--net=/proc/"+strconv.Itoa(d.cmd.Process.Pid)+"/ns/net", "/bin/sh", "-c", line)
	} else if d.asUser {
		c = exec.CommandContext(ctx, "nsenter", "--net=/proc/"+strconv.Itoa(d.cmd.Process.Pid)+"/ns/net",
			"setpriv", "--reuid="+strconv.Itoa(nobody), "--regid="+strconv.Itoa(nobody), "--clear-groups", "/bin/sh", "-c", line)
	} else {
		c = exec.CommandContext(ctx, "/bin/sh", "-c", line)
	}
	c.Dir, c.Env = d.dir, d.env
	return c
}

// run runs line and returns its combined output.
func (d *trialDaemon) run(line string) (string, error) { return d.runAs(line, false) }

// runAs runs line, as root when root is set, and returns its combined
// output.
func (d *trialDaemon) runAs(line string, root bool) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := d.command(ctx, line, root).CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after 2m: %w", err)
	}
	return string(out), err
}

// writeFixture writes a file the examples may read, owned by the user they
// run as.
func (d *trialDaemon) writeFixture(t *testing.T, name, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(d.dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if d.asUser {
		if err := os.Chown(p, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
}

// startTrialDaemon builds mediaedge and starts `mediaedge run`.
func startTrialDaemon(t *testing.T) *trialDaemon {
	t.Helper()
	bindir, err := os.MkdirTemp("", "mediaedge-examples-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bindir) })
	bin := filepath.Join(bindir, "mediaedge")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir, err := os.MkdirTemp("", "mediaedge-examples-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, p := range []string{bindir, dir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	d := &trialDaemon{dir: dir, bin: bin, repo: repo}
	if os.Geteuid() == 0 {
		_, e1 := exec.LookPath("unshare")
		_, e2 := exec.LookPath("nsenter")
		_, e3 := exec.LookPath("setpriv")
		_, e4 := exec.LookPath("ip")
		d.asUser = e1 == nil && e2 == nil && e3 == nil && e4 == nil
		if !d.asUser {
			t.Log("unshare, nsenter, setpriv or ip missing: running the examples as root on the host's network")
		}
	}
	if d.asUser {
		for _, p := range []string{dir, filepath.Join(dir, "tmp")} {
			if err := os.Chown(p, nobody, nobody); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The environment of a newcomer's shell: no systemd runtime directory,
	// so the control socket is the per-user one under TMPDIR.
	d.env = []string{
		"PATH=" + bindir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + dir, "TMPDIR=" + filepath.Join(dir, "tmp"), "LANG=C.UTF-8",
	}
	if d.asUser {
		// wan0 is the uplink systemd/mediaedge.yaml names, for the
		// examples that apply its policy (in this namespace only).
		d.cmd = exec.Command("unshare", "--net", "--", "/bin/sh", "-c",
			`ip link set lo up && ip link add wan0 type veth peer name wan0p && ip addr add 198.51.100.2/24 dev wan0 && `+
				`ip link set wan0 up && ip link set wan0p up && ip route add default via 198.51.100.1 && exec setpriv --reuid=`+strconv.Itoa(nobody)+` --regid=`+strconv.Itoa(nobody)+` --clear-groups "$0" run`, bin)
	} else {
		d.cmd = exec.Command(bin, "run")
	}
	d.cmd.Dir, d.cmd.Env = dir, d.env
	d.cmd.Stdout, d.cmd.Stderr = &d.out, &d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = d.cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.out.String(), "Try, in another terminal:") {
		select {
		case <-done:
			if strings.Contains(d.out.String(), "address already in use") && !d.asUser {
				t.Skipf("the embedded default's ports are taken on this machine (run as root for a namespace of its own):\n%s", d.out.String())
			}
			t.Fatalf("mediaedge run exited:\n%s", d.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner within 30s:\n%s", d.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return d
}

// bannerCommands returns the commands the banner suggests and the trial
// password it prints.
func bannerCommands(out string) (cmds []string, password string) {
	if m := regexp.MustCompile(`TURN user +\S+ / (\S+)`).FindStringSubmatch(out); m != nil {
		password = m[1]
	}
	_, after, _ := strings.Cut(out, "Try, in another terminal:\n")
	sc := bufio.NewScanner(strings.NewReader(after))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "  ") {
			break
		}
		cmds = append(cmds, strings.TrimSpace(line))
	}
	return cmds, password
}

// exampleSessionID is the session id the --help examples use.
const exampleSessionID = "3f2a9c01d4e5b677"

// ensureExampleSession creates the session the --help examples name, if it
// is not there.
func (d *trialDaemon) ensureExampleSession(t *testing.T) {
	t.Helper()
	if _, err := d.run("mediaedge session show " + exampleSessionID); err == nil {
		return
	}
	key := func() string {
		b := make([]byte, 30)
		_, _ = rand.Read(b)
		return "'a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.StdEncoding.EncodeToString(b) + "'"
	}
	if out, err := d.run("mediaedge session create --id " + exampleSessionID + " --rtcp-mux --internal-crypto " + key() +
		" --cloud-crypto " + key() + " --cloud-remote 198.51.100.20:3480"); err != nil {
		t.Fatalf("creating the examples' session: %v\n%s", err, out)
	}
}

func TestExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("builds mediaedge and runs a daemon")
	}
	var examples []example
	files, _ := filepath.Glob("../../docs/*.md")
	files = append([]string{"../../README.md"}, files...)
	for _, f := range files {
		examples = append(examples, markdownExamples(t, f, strings.TrimPrefix(f, "../../"))...)
	}
	examples = append(examples, helpExamples(newRootCmd(nil, nil))...)
	if len(examples) < 20 {
		t.Fatalf("found only %d examples: is the extraction broken?", len(examples))
	}

	d := startTrialDaemon(t)
	banner, password := bannerCommands(d.out.String())
	if password == "" || len(banner) == 0 {
		t.Fatalf("banner without credentials or commands:\n%s", d.out.String())
	}
	d.writeFixture(t, "pw", password+"\n", 0o600)
	// README's examples run ./bin/mediaedge from a checkout.
	if err := os.Mkdir(filepath.Join(d.dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(d.bin, filepath.Join(d.dir, "bin", "mediaedge")); err != nil {
		t.Fatal(err)
	}
	d.writeFixture(t, "turn-secret", hex.EncodeToString([]byte(password))+"\n", 0o600)
	for i, c := range banner {
		examples = append(examples, example{source: fmt.Sprintf("banner line %d", i+1), cmd: c})
	}

	// What the newcomer tried second: coturn's own client through
	// the trial relay to coturn's own peer on loopback.
	t.Run("coturn turnutils_uclient against make run", func(t *testing.T) {
		for _, tool := range []string{"turnutils_uclient", "turnutils_peer"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("%s not installed (Debian package coturn)", tool)
			}
		}
		out, err := d.run(`turnutils_peer -L 127.0.0.1 -p 3490 & p=$!; sleep 0.3
turnutils_uclient -u demo -w "$(cat pw)" -e 127.0.0.1 -r 3490 -m 1 -n 20 -l 160 -z 5 -c 127.0.0.1; rc=$?
kill $p; exit $rc`)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		m := regexp.MustCompile(`Total lost packets (\d+) \(`).FindStringSubmatch(out)
		if m == nil || m[1] != "0" || strings.Contains(out, "error 403") {
			t.Fatalf("uclient through the trial relay:\n%s", out)
		}
	})

	for _, ex := range examples {
		name := ex.source + " " + ex.cmd
		if len(name) > 90 {
			name = name[:90]
		}
		t.Run(name, func(t *testing.T) {
			if ex.skip != "" {
				t.Skipf("%s\n    %s", ex.cmd, ex.skip)
			}
			if strings.Contains(ex.cmd, exampleSessionID) && !strings.Contains(ex.cmd, "session create") {
				d.ensureExampleSession(t)
			}
			line := ex.cmd
			if ex.etc {
				// Run as the admin would on an installed host (root, or
				// sudo), over a private copy of /etc/mediaedge.
				if !d.asUser {
					t.Skipf("%s\n    uses an installed configuration under /etc/mediaedge: runs as root in a mount namespace of its own", ex.cmd)
				}
				d.resetEtc(t, strings.HasPrefix(line, "mediaedge config import-coturn"))
				line = strings.TrimPrefix(line, "sudo ")
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				out, err := d.etcCommand(ctx, line).CombinedOutput()
				if err != nil {
					t.Fatalf("%s\n%v\n%s", ex.cmd, err, out)
				}
				t.Logf("%s: ok", ex.cmd)
				return
			}
			if ex.root {
				// Root changes routing: only in the daemon's own network
				// namespace, never the host's.
				if !d.asUser {
					t.Skipf("%s\n    needs root and a network namespace of its own (it changes routing)", ex.cmd)
				}
				if _, err := exec.LookPath("sudo"); err != nil {
					line = strings.TrimPrefix(line, "sudo ") // root already
				}
			}
			out, err := d.runAs(line, ex.root)
			if err != nil {
				t.Fatalf("%s\n%v\n%s", ex.cmd, err, out)
			}
			t.Logf("%s: ok", ex.cmd)
		})
	}
}
