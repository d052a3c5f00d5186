package version

import (
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	info := func(mainVersion string, settings ...string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			bi := &debug.BuildInfo{Main: debug.Module{Version: mainVersion}}
			for i := 0; i+1 < len(settings); i += 2 {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
			}
			return bi, true
		}
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	for _, c := range []struct {
		name, v, c   string
		info         func() (*debug.BuildInfo, bool)
		wantV, wantC string
	}{
		{"stamped by make build", "35dec81-dirty", "35dec81abc", info("(devel)", "vcs.revision", "ffff"), "35dec81-dirty", "35dec81abc"},
		{"plain go build in a checkout", "", "", info("(devel)", "vcs.revision", "abc123", "vcs.modified", "true"), "dev", "abc123-dirty"},
		{"go install module@version", "", "", info("v0.3.0"), "v0.3.0", ""},
		{"no build info", "", "", none, "dev", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, cm := resolve(c.v, c.c, c.info)
			if v != c.wantV || cm != c.wantC {
				t.Errorf("resolve = %q, %q; want %q, %q", v, cm, c.wantV, c.wantC)
			}
		})
	}
}
