package vuln

import (
	"slices"
	"sort"
	"strings"

	"github.com/palisade-dev/palisade/internal/vuln/osv"
	"github.com/palisade-dev/palisade/internal/vuln/pkgdb"
	"github.com/palisade-dev/palisade/internal/vuln/version"
)

// Reachability precision of a Go finding.
const (
	// PrecisionSymbol: the record names vulnerable packages (and usually
	// functions), and the binary's symbols were read.
	PrecisionSymbol = "symbol"
	// PrecisionModule: the record names no package, so any code of the
	// module in the binary counts (govulncheck does the same).
	PrecisionModule = "module"
)

// goVerdict is what a Go advisory means for one module of one binary.
type goVerdict struct {
	applies   bool     // affected at this version and on this platform
	reachable *bool    // nil: unknown (no symbols)
	precision string   // PrecisionSymbol or PrecisionModule, with reachable
	symbols   []string // vulnerable functions found, "pkg.F"
}

// evalGo decides, as govulncheck's binary mode does, whether advisory a
// affects module at ver in bin: the entries for the module whose ranges
// include ver, keeping only the imports whose goos/goarch match the
// binary's build (an entry whose every import is for another platform does
// not apply); then whether any vulnerable function (or, for an import
// without symbols, any function of the package; for an entry without
// imports, any function of the module) is among the binary's symbols.
func evalGo(a *osv.Advisory, module, ver string, bin *pkgdb.GoBinary) goVerdict {
	scheme := version.ForEcosystem("Go")
	var goos, goarch string
	if bin != nil {
		goos, goarch = bin.GOOS, bin.GOARCH
	}
	type entry struct {
		imports []osv.GoImport
		all     bool // no imports: every package of the module
	}
	var entries []entry
	for i := range a.Affected {
		af := &a.Affected[i]
		if af.Package.Ecosystem != "Go" || af.Package.Name != module {
			continue
		}
		if _, ok := osv.Affects(scheme, af, ver); !ok {
			continue
		}
		imps := af.GoImports()
		if len(imps) == 0 {
			entries = append(entries, entry{all: true})
			continue
		}
		var keep []osv.GoImport
		for _, im := range imps {
			if im.MatchesPlatform(goos, goarch) {
				keep = append(keep, im)
			}
		}
		if len(keep) > 0 {
			entries = append(entries, entry{imports: keep})
		}
	}
	v := goVerdict{applies: len(entries) > 0}
	if !v.applies || bin == nil || bin.Symbols == nil {
		return v
	}
	reach := false
	v.precision = PrecisionSymbol
	for _, e := range entries {
		if e.all {
			v.precision = PrecisionModule
			for pkg := range bin.Symbols {
				if moduleOf(bin, pkg) == module {
					reach = true
					break
				}
			}
			continue
		}
		for _, im := range e.imports {
			pkg := importedPath(bin, module, im.Path)
			if !bin.HasPackage(pkg) {
				continue
			}
			if len(im.Symbols) == 0 {
				reach = true
				v.symbols = append(v.symbols, im.Path)
				continue
			}
			for _, s := range im.Symbols {
				if bin.HasSymbol(pkg, s) {
					reach = true
					v.symbols = append(v.symbols, im.Path+"."+s)
				}
			}
		}
	}
	sort.Strings(v.symbols)
	v.symbols = slices.Compact(v.symbols)
	v.reachable = &reach
	return v
}

// importedPath maps a package path of a record's module to the path the
// binary's code imports it by: the same, unless a replace directive put
// module in place of another module path.
func importedPath(bin *pkgdb.GoBinary, module, pkg string) string {
	for _, d := range bin.Deps {
		if d.Path == module && d.Replaces != "" {
			if rest, ok := strings.CutPrefix(pkg, module); ok {
				return d.Replaces + rest
			}
		}
	}
	return pkg
}

// moduleOf returns the (effective) module a package of the binary belongs
// to: "stdlib" for standard-library packages, else the linked module whose
// path is the longest prefix of the package path.
func moduleOf(bin *pkgdb.GoBinary, pkg string) string {
	first, _, _ := strings.Cut(pkg, "/")
	if !strings.Contains(first, ".") {
		if bin.Path != "" && (pkg == bin.Path || strings.HasPrefix(pkg, bin.Path+"/")) {
			return bin.Main.Path
		}
		return "stdlib"
	}
	best, bestLen := "", -1
	consider := func(path, effective string) {
		if (pkg == path || strings.HasPrefix(pkg, path+"/")) && len(path) > bestLen {
			best, bestLen = effective, len(path)
		}
	}
	consider(bin.Main.Path, bin.Main.Path)
	for _, d := range bin.Deps {
		imported := d.Path
		if d.Replaces != "" {
			imported = d.Replaces
		}
		consider(imported, d.Path)
	}
	return best
}
