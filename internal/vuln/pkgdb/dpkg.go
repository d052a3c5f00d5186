package pkgdb

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/palisade-dev/palisade/internal/vuln/image"
)

// Paragraph is one stanza of a deb822 control file, with the line it starts on.
type Paragraph struct {
	Line   int
	Fields map[string]string
}

// maxFieldsPerParagraph bounds hostile stanzas; real ones have about 20.
const maxFieldsPerParagraph = 4096

// ParseDeb822 reads RFC 822-style stanzas (dpkg status, status.d files).
// Errors carry the 1-based line number.
func ParseDeb822(data []byte) ([]Paragraph, error) {
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, fmt.Errorf("line %d: NUL byte: not a text control file", 1+bytes.Count(data[:bytes.IndexByte(data, 0)], []byte("\n")))
	}
	var out []Paragraph
	var cur *Paragraph
	var last string
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			cur, last = nil, ""
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur == nil || last == "" {
				return nil, fmt.Errorf("line %d: continuation line outside a field: %q", n, truncate(line))
			}
			cur.Fields[last] += "\n" + strings.TrimSpace(line)
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("line %d: expected \"Field: value\", got %q", n, truncate(line))
		}
		if cur == nil {
			out = append(out, Paragraph{Line: n, Fields: map[string]string{}})
			cur = &out[len(out)-1]
		}
		if len(cur.Fields) >= maxFieldsPerParagraph {
			return nil, fmt.Errorf("line %d: more than %d fields in one stanza", n, maxFieldsPerParagraph)
		}
		cur.Fields[k] = strings.TrimSpace(v)
		last = k
	}
	return out, nil
}

// ParseDpkgStatus returns the installed packages of a dpkg status file.
// location names the file in errors and in the packages.
func ParseDpkgStatus(data []byte, location string) ([]Package, error) {
	paras, err := ParseDeb822(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", location, err)
	}
	var out []Package
	for _, p := range paras {
		name, ver := p.Fields["Package"], p.Fields["Version"]
		if name == "" {
			return nil, fmt.Errorf("%s: line %d: stanza without a Package field", location, p.Line)
		}
		if !dpkgInstalled(p.Fields["Status"]) {
			continue
		}
		if ver == "" {
			return nil, fmt.Errorf("%s: line %d: package %s has no Version field", location, p.Line, name)
		}
		pkg := Package{Name: name, Version: ver, Type: TypeDeb, Arch: p.Fields["Architecture"], Location: location}
		if src := p.Fields["Source"]; src != "" {
			sname, sver, _ := strings.Cut(src, " ")
			pkg.SourceName = sname
			sver = strings.TrimSpace(sver)
			if strings.HasPrefix(sver, "(") && strings.HasSuffix(sver, ")") {
				pkg.SourceVersion = sver[1 : len(sver)-1]
			}
		}
		out = append(out, pkg)
	}
	return out, nil
}

// dpkgInstalled says whether a Status field ("want flag status") means the
// package's files are on disk; status files without Status (distroless
// status.d) list installed packages only.
func dpkgInstalled(status string) bool {
	if status == "" {
		return true
	}
	f := strings.Fields(status)
	if len(f) != 3 {
		return true
	}
	switch f[2] {
	case "not-installed", "config-files":
		return false
	}
	return true
}

func collectDpkg(fsys *image.FS, inv *Inventory) error {
	files := append([]string{"var/lib/dpkg/status"}, fsys.Glob("var/lib/dpkg/status.d/*")...)
	eco := inv.Distro.Ecosystem()
	for _, f := range files {
		if strings.HasSuffix(f, ".md5sums") {
			continue
		}
		data, ok := readDB(fsys, f, inv)
		if !ok {
			continue
		}
		pkgs, err := ParseDpkgStatus(data, f)
		if err != nil {
			return err
		}
		for _, p := range pkgs {
			if strings.HasPrefix(eco, "Debian") || strings.HasPrefix(eco, "Ubuntu") {
				p.Ecosystem = eco
			}
			p.PURL = purlDeb(inv.Distro, &p)
			inv.Packages = append(inv.Packages, p)
		}
	}
	return nil
}
