package pkgdb

import (
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/palisade-dev/palisade/internal/vuln/image"
)

// GoBinary is what a Go executable's embedded build information says.
type GoBinary struct {
	GoVersion string     `json:"goVersion"`
	Path      string     `json:"path,omitempty"`
	Main      GoModule   `json:"main"`
	Deps      []GoModule `json:"deps,omitempty"`
}

// GoModule is a module linked into a Go binary (after replacement).
type GoModule struct {
	Path    string `json:"path"`
	Version string `json:"version"`
}

// Probe reads the build information of a Go executable; it returns nil
// (and no error) for executables that are not Go programs. Pass it to
// image.Extractor.
func Probe(_ string, r io.ReaderAt, _ int64) ([]byte, error) {
	bi, err := buildinfo.Read(r)
	if err != nil {
		return nil, nil // not a Go binary, or one without module information
	}
	out := GoBinary{GoVersion: bi.GoVersion, Path: bi.Path, Main: GoModule{Path: bi.Main.Path, Version: bi.Main.Version}}
	for _, d := range bi.Deps {
		if d == nil {
			continue
		}
		m := d
		if d.Replace != nil {
			m = d.Replace
		}
		out.Deps = append(out.Deps, GoModule{Path: m.Path, Version: m.Version})
	}
	return json.Marshal(out)
}

// GoPackages turns a Go binary's build information into packages: the main
// module, every dependency, and the standard library as "stdlib" (the name
// Go advisories use for it).
func GoPackages(bin *GoBinary, location string) []Package {
	var out []Package
	add := func(name, ver string) {
		if name == "" || ver == "" {
			return
		}
		out = append(out, Package{Name: name, Version: ver, Type: TypeGo, Ecosystem: "Go", Location: location, PURL: purlGo(name, ver)})
	}
	if bin.Main.Path != "" {
		add(bin.Main.Path, bin.Main.Version)
	}
	for _, d := range bin.Deps {
		add(d.Path, d.Version)
	}
	if v, ok := strings.CutPrefix(bin.GoVersion, "go"); ok {
		// "go1.26.8 X:boringcrypto" style suffixes are not part of the version.
		v, _, _ = strings.Cut(v, " ")
		add("stdlib", "go"+v)
	}
	return out
}

func collectGo(fsys *image.FS, inv *Inventory) error {
	for _, e := range fsys.Probed() {
		var bin GoBinary
		if err := json.Unmarshal(e.Probe, &bin); err != nil {
			inv.Warnings = append(inv.Warnings, fmt.Sprintf("%s: stale Go build information: %v", e.Path, err))
			continue
		}
		inv.Packages = append(inv.Packages, GoPackages(&bin, e.Path)...)
	}
	return nil
}
