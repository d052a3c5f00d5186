// Package pkgdb reads the package inventory of a flattened image: the
// distribution from os-release, dpkg, apk and rpm databases, Go binaries' build
// information, and language packages (npm package.json and package-lock.json,
// Python *.dist-info / *.egg-info metadata). Every parser treats its input as
// hostile: bounded, no panics, errors that name the file and line.
package pkgdb

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/palisade-dev/palisade/internal/vuln/image"
)

// Package types, as in package URLs.
const (
	TypeDeb    = "deb"
	TypeAPK    = "apk"
	TypeRPM    = "rpm"
	TypeGo     = "golang"
	TypeNPM    = "npm"
	TypePython = "pypi"
)

// Package is one installed package.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Type    string `json:"type"`
	// Ecosystem is the OSV ecosystem advisories for this package use, e.g.
	// "Debian:12", "Alpine:v3.19", "Go", "npm", "PyPI" ("" when unknown).
	Ecosystem string `json:"ecosystem,omitempty"`
	// SourceName and SourceVersion identify the distribution source package
	// (Debian and Alpine advisories are per source package).
	SourceName    string `json:"sourceName,omitempty"`
	SourceVersion string `json:"sourceVersion,omitempty"`
	Arch          string `json:"arch,omitempty"`
	Location      string `json:"location"` // the file it was found in
	PURL          string `json:"purl"`
}

// MatchName is the name advisories use: the source package for
// distributions, the package itself otherwise.
func (p *Package) MatchName() string {
	if p.SourceName != "" {
		return p.SourceName
	}
	return p.Name
}

// MatchVersion is the version advisories compare against.
func (p *Package) MatchVersion() string {
	if p.SourceVersion != "" {
		return p.SourceVersion
	}
	return p.Version
}

// Distro is what /etc/os-release says.
type Distro struct {
	ID         string `json:"id"`
	VersionID  string `json:"versionID,omitempty"`
	Codename   string `json:"codename,omitempty"`
	PrettyName string `json:"prettyName,omitempty"`
}

// Ecosystem maps the distribution to its OSV ecosystem ("" if none).
func (d *Distro) Ecosystem() string {
	if d == nil {
		return ""
	}
	switch d.ID {
	case "debian":
		if d.VersionID != "" {
			return "Debian:" + d.VersionID
		}
		return "Debian"
	case "ubuntu":
		return "Ubuntu:" + d.VersionID
	case "alpine":
		parts := strings.SplitN(d.VersionID, ".", 3)
		if len(parts) >= 2 {
			return "Alpine:v" + parts[0] + "." + parts[1]
		}
		return "Alpine"
	case "wolfi":
		return "Wolfi"
	}
	return rpmEcosystem(d)
}

// Inventory is everything found in an image.
type Inventory struct {
	Distro   *Distro   `json:"distro,omitempty"`
	Packages []Package `json:"packages"`
	Warnings []string  `json:"warnings,omitempty"`
	// GoBinaries are the Go executables found, with the symbols that decide
	// whether a Go advisory's vulnerable code is in them.
	GoBinaries []GoBinary `json:"goBinaries,omitempty"`
}

// GoBinary returns the Go executable at location, if any.
func (inv *Inventory) GoBinary(location string) *GoBinary {
	for i := range inv.GoBinaries {
		if inv.GoBinaries[i].Location == location {
			return &inv.GoBinaries[i]
		}
	}
	return nil
}

var keepExact = map[string]bool{
	"etc/os-release":           true,
	"usr/lib/os-release":       true,
	"var/lib/dpkg/status":      true,
	"lib/apk/db/installed":     true,
	"usr/lib/apk/db/installed": true,
}

// Keep selects the files whose content the inventory needs; pass it to
// image.Extractor.
func Keep(p string) bool {
	if keepExact[p] || keepRPM(p) {
		return true
	}
	dir, base := path.Split(p)
	switch {
	case dir == "var/lib/dpkg/status.d/":
		return !strings.HasSuffix(base, ".md5sums")
	case base == "package.json":
		return strings.Contains(p, "node_modules/")
	case base == "package-lock.json":
		return !strings.Contains(p, "node_modules/")
	case base == "METADATA":
		return strings.HasSuffix(dir, ".dist-info/")
	case base == "PKG-INFO":
		return strings.HasSuffix(dir, ".egg-info/")
	case strings.HasSuffix(base, ".egg-info"):
		return true // a single-file egg-info is the metadata itself
	}
	return false
}

// Collect builds the inventory of fsys. A corrupt package database is an
// error naming the file and line; a missing one is simply absent.
func Collect(fsys *image.FS) (*Inventory, error) {
	inv := &Inventory{Warnings: append([]string(nil), fsys.Warnings...)}
	d, err := readOSRelease(fsys)
	if err != nil {
		return nil, err
	}
	inv.Distro = d
	for _, c := range []func(*image.FS, *Inventory) error{collectDpkg, collectAPK, collectRPM, collectGo, collectNPM, collectPython} {
		if err := c(fsys, inv); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(inv.Packages, func(i, j int) bool {
		a, b := &inv.Packages[i], &inv.Packages[j]
		if a.Type != b.Type {
			return a.Type < b.Type
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		return a.Location < b.Location
	})
	return inv, nil
}

// readOSRelease parses os-release (etc/ first, then usr/lib/, as systemd does).
func readOSRelease(fsys *image.FS) (*Distro, error) {
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		data, err := fsys.ReadFile(p)
		if err != nil {
			continue
		}
		kv, err := ParseOSRelease(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if kv["ID"] == "" {
			continue
		}
		return &Distro{ID: kv["ID"], VersionID: kv["VERSION_ID"], Codename: kv["VERSION_CODENAME"], PrettyName: kv["PRETTY_NAME"]}, nil
	}
	return nil, nil
}

// ParseOSRelease reads KEY=value lines with shell-style quoting.
func ParseOSRelease(data []byte) (map[string]string, error) {
	if len(data) > 64<<10 {
		return nil, fmt.Errorf("%d bytes is too large for an os-release file", len(data))
	}
	kv := map[string]string{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: expected KEY=value, got %q", i+1, truncate(line))
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
			v = strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\$`, `$`, "\\`", "`").Replace(v)
		}
		kv[k] = v
	}
	return kv, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// readDB returns the content of a package database file. A missing file is
// simply absent; a symlink that does not resolve inside the image root (for
// instance an absolute link to a host path in a dir: root filesystem) or a
// file whose content was not kept is reported as a warning.
func readDB(fsys *image.FS, p string, inv *Inventory) ([]byte, bool) {
	data, err := fsys.ReadFile(p)
	if err == nil {
		return data, true
	}
	if e, ok := fsys.Lstat(p); ok && e.Type == image.TypeSymlink {
		inv.Warnings = append(inv.Warnings, fmt.Sprintf("%s: symlink to %q does not resolve to a file inside the image root (links are resolved as in a chroot): %v", p, e.Link, err))
	} else if fsys.Exists(p) {
		inv.Warnings = append(inv.Warnings, fmt.Sprintf("%s: %v", p, err))
	}
	return nil, false
}
