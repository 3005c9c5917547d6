// Package buildinfo reports the version of the running binary and of the
// libraries that define its behaviour on the wire.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Version and Commit are set at link time:
//
//	go build -ldflags "-X github.com/mediaedge/mediaedge/internal/buildinfo.Version=1.2.3"
var (
	Version = "dev"
	Commit  = ""
)

// Libraries whose versions `mediaedge version` reports.
var Libraries = []string{
	"github.com/pion/turn/v5",
	"github.com/pion/srtp/v3",
	"github.com/pion/rtp",
	"github.com/pion/rtcp",
	"github.com/vishvananda/netlink",
	"github.com/google/gopacket",
	"github.com/prometheus/client_golang",
}

// Info describes the running binary.
type Info struct {
	Version   string            `json:"version"`
	Commit    string            `json:"commit,omitempty"`
	GoVersion string            `json:"go_version"`
	Libraries map[string]string `json:"libraries"`
}

// Get returns the build information of the running binary.
func Get() Info {
	info := Info{Version: Version, Commit: Commit, GoVersion: runtime.Version(), Libraries: map[string]string{}}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	if info.Commit == "" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				info.Commit = s.Value
			}
		}
	}
	if info.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		info.Version = bi.Main.Version
	}
	want := map[string]bool{}
	for _, l := range Libraries {
		want[l] = true
	}
	for _, d := range bi.Deps {
		if want[d.Path] {
			v := d.Version
			if d.Replace != nil {
				v += " => " + d.Replace.Path + " " + d.Replace.Version
			}
			info.Libraries[d.Path] = v
		}
	}
	return info
}
