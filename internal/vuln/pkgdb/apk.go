package pkgdb

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/palisade-dev/palisade/internal/vuln/image"
)

// ParseAPKInstalled reads apk-tools' lib/apk/db/installed: stanzas of
// one-letter keys ("P:name", "V:version", "o:origin", "A:arch").
func ParseAPKInstalled(data []byte, location string) ([]Package, error) {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return nil, fmt.Errorf("%s: line %d: NUL byte: not an apk database", location, 1+bytes.Count(data[:i], []byte("\n")))
	}
	var out []Package
	var cur *Package
	start := 0
	flush := func() error {
		if cur == nil {
			return nil
		}
		if cur.Name == "" || cur.Version == "" {
			return fmt.Errorf("%s: line %d: package stanza without P: or V:", location, start)
		}
		out = append(out, *cur)
		cur = nil
		return nil
	}
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		if len(line) < 2 || line[1] != ':' {
			return nil, fmt.Errorf("%s: line %d: expected \"K:value\", got %q", location, n, truncate(line))
		}
		if cur == nil {
			cur, start = &Package{Type: TypeAPK, Location: location}, n
		}
		v := line[2:]
		switch line[0] {
		case 'P':
			cur.Name = v
		case 'V':
			cur.Version = v
		case 'A':
			cur.Arch = v
		case 'o':
			cur.SourceName = v
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

func collectAPK(fsys *image.FS, inv *Inventory) error {
	for _, f := range []string{"lib/apk/db/installed", "usr/lib/apk/db/installed"} {
		data, ok := readDB(fsys, f, inv)
		if !ok {
			continue
		}
		pkgs, err := ParseAPKInstalled(data, f)
		if err != nil {
			return err
		}
		eco := inv.Distro.Ecosystem()
		for _, p := range pkgs {
			if strings.HasPrefix(eco, "Alpine") || eco == "Wolfi" {
				p.Ecosystem = eco
			}
			p.PURL = purlAPK(inv.Distro, &p)
			inv.Packages = append(inv.Packages, p)
		}
		return nil // usr/lib is a fallback for the same database
	}
	return nil
}
