// Package version says which build of Palisade is running. `make build`
// stamps Version (git describe --tags --always --dirty) and Commit (the
// full commit hash) with -ldflags -X; a plain `go build` in a checkout still
// gets the commit (and whether the tree was modified) from the VCS
// information the Go toolchain records, and `go install MODULE@VERSION` the
// module version. The server reports both in /api/v1/status and agents in
// their heartbeats, so a user can tell which server and agents run which
// build.
package version

import "runtime/debug"

// Set at link time by `make build`:
//
//	-X github.com/palisade-dev/palisade/internal/version.Version=...
//	-X github.com/palisade-dev/palisade/internal/version.Commit=...
var (
	Version = ""
	Commit  = ""
)

func init() { Version, Commit = resolve(Version, Commit, debug.ReadBuildInfo) }

// resolve fills in what the linker did not set from the build info.
func resolve(v, c string, info func() (*debug.BuildInfo, bool)) (string, string) {
	bi, ok := info()
	if c == "" && ok {
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" && modified == "true" {
			rev += "-dirty"
		}
		c = rev
	}
	if v == "" && ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	if v == "" {
		v = "dev"
	}
	return v, c
}

// String is "VERSION (commit COMMIT)", or VERSION alone when the commit is
// unknown.
func String() string {
	if Commit == "" {
		return Version
	}
	return Version + " (commit " + Commit + ")"
}
