package control

import (
	"fmt"
	"os"
	"path/filepath"
)

// SocketName is the file name of the control socket in the runtime
// directory.
const SocketName = "mediaedge.sock"

// RuntimeDir returns the directory for the control socket: systemd's
// $RUNTIME_DIRECTORY (RuntimeDirectory=mediaedge), /run/mediaedge for root,
// $XDG_RUNTIME_DIR/mediaedge for a user session, or a per-user directory
// under the temporary directory.
func RuntimeDir() string {
	if d := os.Getenv("RUNTIME_DIRECTORY"); d != "" {
		// systemd may pass several, separated by colons; the first is ours.
		for i := 0; i < len(d); i++ {
			if d[i] == ':' {
				return d[:i]
			}
		}
		return d
	}
	if os.Geteuid() == 0 {
		return "/run/mediaedge"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "mediaedge")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("mediaedge-%d", os.Geteuid()))
}

// DefaultSocket returns the default control socket path.
func DefaultSocket() string { return filepath.Join(RuntimeDir(), SocketName) }
