// Package buildinfo says which build of the service a binary is: its
// version, and the commit it was built from.
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// version, when a release build sets it, replaces the module version Go
// records:
//
//	go build -ldflags "-X github.com/backtestd/backtestd/internal/buildinfo.version=v1.4.0" ./cmd/server ./cmd/worker
//
// It is a variable only because -X can set nothing else; nothing assigns it.
var version string

// Devel is the version of a build Go could not stamp: no VCS information
// and no -X, as in tests.
const Devel = "(devel)"

// Info is what a binary knows of its build.
type Info struct {
	// Version is the release version set at link time, else the module
	// version Go recorded: a tag (v1.4.0), a pseudo-version of the commit
	// (v0.0.0-20261129120000-abcdef123456, +dirty when modified), or Devel.
	Version string
	// Revision is the VCS commit the binary was built from; empty when
	// unknown (-buildvcs=false, or no repository).
	Revision string
	// Modified says the working tree had uncommitted changes.
	Modified bool
}

// Read returns the running binary's build information.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	return read(version, bi, ok)
}

func read(release string, bi *debug.BuildInfo, ok bool) Info {
	info := Info{Version: release}
	if ok {
		if info.Version == "" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if info.Version == "" {
		info.Version = Devel
	}
	return info
}

// String is the version line of the version commands: the version, then
// the revision and whether the tree was modified, when known.
func (i Info) String() string {
	var b strings.Builder
	b.WriteString(i.Version)
	if i.Revision != "" {
		b.WriteString(" (revision " + i.Revision)
		if i.Modified {
			b.WriteString(", modified")
		}
		b.WriteString(")")
	}
	return b.String()
}
