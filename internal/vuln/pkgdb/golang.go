package pkgdb

import (
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/palisade-dev/palisade/internal/vuln/goexe"
	"github.com/palisade-dev/palisade/internal/vuln/image"
)

// GoBinary is what a Go executable says about itself: build information,
// platform and the functions linked in (see package goexe).
type GoBinary struct {
	GoVersion string     `json:"goVersion"`
	Path      string     `json:"path,omitempty"`
	Main      GoModule   `json:"main"`
	Deps      []GoModule `json:"deps,omitempty"`
	GOOS      string     `json:"goos,omitempty"`
	GOARCH    string     `json:"goarch,omitempty"`
	// Symbols maps package paths to the function names linked in, inlined
	// ones included ("F", "T.M"), sorted and joined by newlines (one string
	// per package keeps the stored inventory cheap to encode and decode:
	// a large binary has 100,000+ names); nil when they could not be read,
	// and then reachability is unknown. See HasPackage, HasSymbol.
	Symbols      map[string]string `json:"symbols,omitempty"`
	SymbolSource string            `json:"symbolSource,omitempty"`
	// Location is the executable's path in the image (in Inventory.GoBinaries).
	Location string `json:"location,omitempty"`
}

// GoModule is a module linked into a Go binary (after replacement).
type GoModule struct {
	Path    string `json:"path"`
	Version string `json:"version"`
	// Replaces is the module path the code imports when a replace
	// directive substituted Path for it (packages keep that path).
	Replaces string `json:"replaces,omitempty"`
}

// Probe reads the build information and symbols of a Go executable (ELF,
// PE or Mach-O); it returns nil (and no error) for executables that are not
// Go programs. Pass it to image.Extractor.
func Probe(_ string, r io.ReaderAt, _ int64) ([]byte, error) {
	info, err := goexe.Read(r)
	if err != nil {
		return nil, nil // not a Go binary, or one without module information
	}
	out := fromBuildInfo(info.BuildInfo)
	out.GOOS, out.GOARCH, out.SymbolSource = info.GOOS, info.GOARCH, info.SymbolSource
	if info.Symbols != nil {
		out.Symbols = make(map[string]string, len(info.Symbols))
		for pkg, names := range info.Symbols {
			out.Symbols[pkg] = strings.Join(names, "\n")
		}
	}
	return json.Marshal(out)
}

// HasPackage reports whether any function of package pkg is linked in.
func (b *GoBinary) HasPackage(pkg string) bool {
	_, ok := b.Symbols[pkg]
	return ok
}

// HasSymbol reports whether function name ("F", "T.M") of package pkg is
// linked in.
func (b *GoBinary) HasSymbol(pkg, name string) bool {
	names, ok := b.Symbols[pkg]
	if !ok || name == "" || strings.Contains(name, "\n") {
		return false
	}
	for names != "" {
		line, rest, _ := strings.Cut(names, "\n")
		if line == name {
			return true
		}
		names = rest
	}
	return false
}

func fromBuildInfo(bi *debug.BuildInfo) GoBinary {
	out := GoBinary{GoVersion: bi.GoVersion, Path: bi.Path, Main: GoModule{Path: bi.Main.Path, Version: bi.Main.Version}}
	for _, d := range bi.Deps {
		if d == nil {
			continue
		}
		m := GoModule{Path: d.Path, Version: d.Version}
		if d.Replace != nil {
			m = GoModule{Path: d.Replace.Path, Version: d.Replace.Version}
			if d.Replace.Path != d.Path {
				m.Replaces = d.Path
			}
		}
		out.Deps = append(out.Deps, m)
	}
	return out
}

// ProbeBuildInfo is Probe without symbols and platform: build information
// only, as the scanner read Go executables before symbol-level matching
// (kept to measure what symbol reading costs).
func ProbeBuildInfo(_ string, r io.ReaderAt, _ int64) ([]byte, error) {
	bi, err := buildinfo.Read(r)
	if err != nil {
		return nil, nil
	}
	return json.Marshal(fromBuildInfo(bi))
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
		bin.Location = e.Path
		inv.GoBinaries = append(inv.GoBinaries, bin)
	}
	return nil
}
