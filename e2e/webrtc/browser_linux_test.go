package webrtc

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// findChromium returns Chromium's path, or skips t saying how to get it.
func findChromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (Debian: apt-get install chromium); the real-browser test needs it")
	return ""
}

// lockedBuffer collects a child's output; safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 { // bound what a chatty child can hold
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// chromium is a browser the test started. exited is closed when its
// process has ended (its output is logged when the test fails).
type chromium struct {
	exited <-chan struct{}
}

// startChromium opens url in headless Chromium whose fake microphone plays
// micWAV. The browser runs in its own process group with a throwaway
// profile; the group is killed and reaped, and the profile removed, when
// the test ends. Chromium's output is logged if the test failed.
func startChromium(t testing.TB, url, micWAV string) *chromium {
	t.Helper()
	bin := findChromium(t)
	profile := t.TempDir()
	args := []string{
		"--headless=new",
		"--user-data-dir=" + profile,
		"--no-first-run", "--no-default-browser-check", "--disable-gpu",
		"--disable-dev-shm-usage", "--disable-extensions", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--metrics-recording-only",
		// The fake capture device and no permission prompt.
		"--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
		"--use-file-for-fake-audio-capture=" + micWAV,
		"--autoplay-policy=no-user-gesture-required",
		// Real host candidates, loopback included: the gateway listens on
		// 127.0.0.1 and mDNS names would hide the addresses.
		"--allow-loopback-in-peer-connection",
		"--disable-features=WebRtcHideLocalIpsWithMdns",
		// Headless keeps timers running, but not in the background.
		"--disable-background-timer-throttling", "--disable-renderer-backgrounding",
		"--enable-logging=stderr", "--v=0",
	}
	if os.Geteuid() == 0 {
		// Chromium refuses to run as root with its sandbox.
		args = append(args, "--no-sandbox")
	}
	args = append(args, url)
	cmd := exec.Command(bin, args...)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "HOME="+profile, "XDG_CONFIG_HOME="+filepath.Join(profile, "config"),
		"XDG_CACHE_HOME="+filepath.Join(profile, "cache"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		cmd.Wait()
	}()
	// Registered after TempDir's cleanup, so it runs first: the profile
	// is removed only once the browser is gone.
	t.Cleanup(func() {
		// The whole group: Chromium forks renderer, GPU and utility
		// processes that outlive a kill of the browser process alone.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("chromium (pid %d) did not exit within 10 s of SIGKILL", cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("chromium output (D-Bus complaints left out):\n%s", tail(withoutDBus(out.String()), 6000))
		}
	})
	return &chromium{exited: exited}
}

// withoutDBus drops the lines in which headless Chromium, with no session
// bus, says so again and again.
func withoutDBus(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.Contains(l, "dbus") && !strings.Contains(l, "D-Bus") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// TestSkipsWithoutTheTools checks that a machine without chromium or
// ffmpeg skips the browser tests, saying why, rather than failing them.
func TestSkipsWithoutTheTools(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	for name, find := range map[string]func(testing.TB) string{"chromium": findChromium, "ffmpeg": findFFmpeg} {
		skipped := false
		t.Run(name, func(t *testing.T) {
			defer func() { skipped = t.Skipped() }()
			find(t)
		})
		if !skipped {
			t.Errorf("no %s on PATH, and the test did not skip", name)
		}
	}
}
