package pkgdb

import (
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/palisade-dev/palisade/internal/vuln/image"
)

// ParsePackageJSON reads an installed npm package's package.json.
func ParsePackageJSON(data []byte, location string) (*Package, error) {
	var pj struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Private bool   `json:"private"`
	}
	if err := json.Unmarshal(data, &pj); err != nil {
		return nil, fmt.Errorf("%s: %w", location, err)
	}
	if pj.Name == "" || pj.Version == "" {
		return nil, nil
	}
	return &Package{Name: pj.Name, Version: pj.Version, Type: TypeNPM, Ecosystem: "npm", Location: location, PURL: purlNPM(pj.Name, pj.Version)}, nil
}

// ParsePackageLock reads npm lockfiles v1 ("dependencies") and v2/v3
// ("packages" keyed by node_modules path).
func ParsePackageLock(data []byte, location string) ([]Package, error) {
	var lock struct {
		LockfileVersion int `json:"lockfileVersion"`
		Packages        map[string]struct {
			Name    string `json:"name"`
			Version string `json:"version"`
			Link    bool   `json:"link"`
		} `json:"packages"`
		Dependencies map[string]json.RawMessage `json:"dependencies"`
	}
	if err := json.Unmarshal(data, &lock); err != nil {
		return nil, fmt.Errorf("%s: %w", location, err)
	}
	var out []Package
	add := func(name, ver string) {
		if name != "" && ver != "" && !strings.ContainsAny(ver, ":/") { // skip file:, git+https: and link versions
			out = append(out, Package{Name: name, Version: ver, Type: TypeNPM, Ecosystem: "npm", Location: location, PURL: purlNPM(name, ver)})
		}
	}
	if len(lock.Packages) > 0 {
		keys := make([]string, 0, len(lock.Packages))
		for k := range lock.Packages {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := lock.Packages[k]
			i := strings.LastIndex(k, "node_modules/")
			if k == "" || i < 0 || p.Link {
				continue // the root project, or a workspace link
			}
			name := p.Name
			if name == "" {
				name = k[i+len("node_modules/"):]
			}
			add(name, p.Version)
		}
		return out, nil
	}
	var walk func(deps map[string]json.RawMessage, depth int) error
	walk = func(deps map[string]json.RawMessage, depth int) error {
		if depth > 64 {
			return fmt.Errorf("%s: dependencies nested more than 64 levels", location)
		}
		names := make([]string, 0, len(deps))
		for n := range deps {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			var d struct {
				Version      string                     `json:"version"`
				Dependencies map[string]json.RawMessage `json:"dependencies"`
			}
			if err := json.Unmarshal(deps[n], &d); err != nil {
				return fmt.Errorf("%s: dependency %s: %w", location, n, err)
			}
			add(n, d.Version)
			if err := walk(d.Dependencies, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return out, walk(lock.Dependencies, 0)
}

func collectNPM(fsys *image.FS, inv *Inventory) error {
	seen := map[string]bool{}
	for _, e := range fsys.KeptFiles() {
		_, base := path.Split(e.Path)
		var pkgs []Package
		switch {
		case base == "package.json":
			p, err := ParsePackageJSON(e.Data, e.Path)
			if err != nil {
				inv.Warnings = append(inv.Warnings, err.Error())
				continue
			}
			if p != nil {
				pkgs = append(pkgs, *p)
			}
		case base == "package-lock.json":
			ps, err := ParsePackageLock(e.Data, e.Path)
			if err != nil {
				inv.Warnings = append(inv.Warnings, err.Error())
				continue
			}
			pkgs = ps
		}
		for _, p := range pkgs {
			key := p.Name + "@" + p.Version
			if !seen[key] {
				seen[key] = true
				inv.Packages = append(inv.Packages, p)
			}
		}
	}
	return nil
}

// ParsePythonMetadata reads the Name and Version headers of a core
// metadata file (dist-info METADATA, egg-info PKG-INFO).
func ParsePythonMetadata(data []byte, location string) (*Package, error) {
	var name, ver string
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			break // the body (description) follows the headers
		}
		if i > 10000 {
			return nil, fmt.Errorf("%s: more than 10000 header lines", location)
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.ToLower(k) {
		case "name":
			name = strings.TrimSpace(v)
		case "version":
			ver = strings.TrimSpace(v)
		}
	}
	if name == "" || ver == "" {
		return nil, fmt.Errorf("%s: no Name or Version header", location)
	}
	return &Package{Name: name, Version: ver, Type: TypePython, Ecosystem: "PyPI", Location: location, PURL: purlPyPI(name, ver)}, nil
}

func collectPython(fsys *image.FS, inv *Inventory) error {
	for _, e := range fsys.KeptFiles() {
		dir, base := path.Split(e.Path)
		isMeta := (base == "METADATA" && strings.HasSuffix(dir, ".dist-info/")) ||
			(base == "PKG-INFO" && strings.HasSuffix(dir, ".egg-info/")) || strings.HasSuffix(base, ".egg-info")
		if !isMeta {
			continue
		}
		p, err := ParsePythonMetadata(e.Data, e.Path)
		if err != nil {
			inv.Warnings = append(inv.Warnings, err.Error())
			continue
		}
		inv.Packages = append(inv.Packages, *p)
	}
	return nil
}
