package pkgdb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/palisade-dev/palisade/internal/vuln/image"
)

// rpmDBPaths are the rpm databases looked for, in order; the first one
// present is the image's database. rpm ≥ 4.16 writes rpmdb.sqlite (Fedora
// 33+, RHEL/Rocky/AlmaLinux 9+) under var/lib/rpm or, on newer
// distributions, usr/lib/sysimage/rpm; older ones (RHEL ≤ 8, CentOS 7)
// keep a Berkeley DB hash database named Packages.
var rpmDBPaths = []string{
	"usr/lib/sysimage/rpm/rpmdb.sqlite",
	"var/lib/rpm/rpmdb.sqlite",
	"var/lib/rpm/Packages",
	"usr/lib/sysimage/rpm/Packages",
}

// keepRPM reports whether p is an rpm database or its SQLite write-ahead log.
func keepRPM(p string) bool {
	for _, db := range rpmDBPaths {
		if p == db || (strings.HasSuffix(db, ".sqlite") && p == db+"-wal") {
			return true
		}
	}
	return false
}

// ParseRPMDB lists the packages of an rpm database: SQLite (rpmdb.sqlite,
// with wal the content of rpmdb.sqlite-wal if any) or Berkeley DB
// (Packages). Errors name location.
func ParseRPMDB(data, wal []byte, location string) ([]Package, error) {
	var blobs [][]byte
	collect := func(b []byte) error {
		if len(blobs) >= maxRPMPackages {
			return fmt.Errorf("more than %d packages", maxRPMPackages)
		}
		blobs = append(blobs, b)
		return nil
	}
	var err error
	switch {
	case bytes.HasPrefix(data, []byte(sqliteMagic)):
		err = sqliteRPMBlobs(data, wal, collect)
	case isBDBHash(data):
		err = bdbValues(data, collect)
	default:
		err = errors.New("neither an SQLite nor a Berkeley DB hash rpm database")
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", location, err)
	}
	var out []Package
	for i, b := range blobs {
		h, err := parseRPMHeader(b)
		if err != nil {
			return nil, fmt.Errorf("%s: package header %d: %w", location, i+1, err)
		}
		if h.name == "gpg-pubkey" {
			continue // an imported signing key, not software
		}
		p, err := h.pkg(location)
		if err != nil {
			return nil, fmt.Errorf("%s: package header %d: %w", location, i+1, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// maxRPMPackages bounds hostile databases; real ones hold a few thousand.
const maxRPMPackages = 1 << 17

func sqliteRPMBlobs(data, wal []byte, fn func([]byte) error) error {
	db, err := openSQLite(data, wal)
	if err != nil {
		return err
	}
	root, err := db.tableRoot("Packages")
	if err != nil {
		return err
	}
	return db.scanTable(root, func(_ int64, rec []byte) error {
		cols, err := sqliteRecord(rec)
		if err != nil {
			return err
		}
		if len(cols) < 2 || cols[1].kind != colBlob {
			return errors.New("Packages row without a header blob")
		}
		return fn(cols[1].raw)
	})
}

// rpm header tags and types (rpm's rpmtag.h).
const (
	rpmTagName      = 1000
	rpmTagVersion   = 1001
	rpmTagRelease   = 1002
	rpmTagEpoch     = 1003
	rpmTagArch      = 1022
	rpmTagSourceRPM = 1044

	rpmTypeInt32  = 4
	rpmTypeString = 6
)

type rpmHeader struct {
	name, version, release, arch, sourceRPM string
	epoch                                   int64 // -1 when absent
}

// parseRPMHeader reads a header blob as rpm stores it in its database: the
// entry count il and data length dl (big-endian int32), il 16-byte index
// entries (tag, type, offset, count), then dl bytes of data.
func parseRPMHeader(b []byte) (*rpmHeader, error) {
	if len(b) < 8 {
		return nil, errors.New("shorter than a header")
	}
	il, dl := binary.BigEndian.Uint32(b[0:4]), binary.BigEndian.Uint32(b[4:8])
	// rpm's own bounds (hdrblobInit): at most 0xffff entries, 256 MB of data.
	if il == 0 || il > 0xffff || dl > 256<<20 {
		return nil, fmt.Errorf("implausible header size: %d entries, %d data bytes", il, dl)
	}
	idx := 8 + 16*int(il)
	if idx+int(dl) > len(b) {
		return nil, fmt.Errorf("%d entries and %d data bytes do not fit in %d bytes", il, dl, len(b))
	}
	store := b[idx : idx+int(dl)]
	h := &rpmHeader{epoch: -1}
	for i := 0; i < int(il); i++ {
		e := b[8+16*i : 8+16*i+16]
		tag := binary.BigEndian.Uint32(e[0:4])
		typ := binary.BigEndian.Uint32(e[4:8])
		off := binary.BigEndian.Uint32(e[8:12])
		count := binary.BigEndian.Uint32(e[12:16])
		var dst *string
		switch tag {
		case rpmTagName:
			dst = &h.name
		case rpmTagVersion:
			dst = &h.version
		case rpmTagRelease:
			dst = &h.release
		case rpmTagArch:
			dst = &h.arch
		case rpmTagSourceRPM:
			dst = &h.sourceRPM
		case rpmTagEpoch:
			if typ != rpmTypeInt32 || count < 1 || uint64(off)+4 > uint64(len(store)) {
				return nil, fmt.Errorf("tag %d (epoch): bad type %d or offset %d", tag, typ, off)
			}
			h.epoch = int64(binary.BigEndian.Uint32(store[off:]))
			continue
		default:
			continue
		}
		if typ != rpmTypeString || uint64(off) >= uint64(len(store)) {
			return nil, fmt.Errorf("tag %d: bad type %d or offset %d", tag, typ, off)
		}
		s := store[off:]
		end := bytes.IndexByte(s, 0)
		if end < 0 {
			return nil, fmt.Errorf("tag %d: unterminated string", tag)
		}
		*dst = string(s[:end])
	}
	return h, nil
}

// pkg turns a header into a Package: Version is "[epoch:]version-release",
// the form Red Hat, Rocky Linux, AlmaLinux and SUSE advisories compare, and
// SourceName the source rpm's name (advisories are per source package).
func (h *rpmHeader) pkg(location string) (Package, error) {
	if h.name == "" || h.version == "" {
		return Package{}, errors.New("no name or version")
	}
	if strings.ContainsAny(h.name+h.version+h.release+h.arch, "\x00\n") {
		return Package{}, fmt.Errorf("control characters in %q", truncate(h.name))
	}
	v := h.version
	if h.release != "" {
		v += "-" + h.release
	}
	if h.epoch >= 0 {
		v = strconv.FormatInt(h.epoch, 10) + ":" + v
	}
	p := Package{Name: h.name, Version: v, Type: TypeRPM, Arch: h.arch, Location: location}
	if src := sourceRPMName(h.sourceRPM); src != "" {
		p.SourceName = src
	}
	return p, nil
}

// sourceRPMName extracts the name from a source rpm file name such as
// "openssl-3.0.7-27.el9.src.rpm" (name-version-release.src.rpm).
func sourceRPMName(file string) string {
	s, ok := strings.CutSuffix(file, ".src.rpm")
	if !ok {
		if s, ok = strings.CutSuffix(file, ".nosrc.rpm"); !ok {
			return ""
		}
	}
	for range 2 { // drop -release, then -version
		i := strings.LastIndexByte(s, '-')
		if i <= 0 {
			return ""
		}
		s = s[:i]
	}
	return s
}

// rpmEcosystem maps an rpm-based distribution to its OSV ecosystem: "Rocky
// Linux:9", "AlmaLinux:9", "Red Hat:enterprise_linux:9" (Red Hat records
// add a repository after it, see osv.Store.Match), "openSUSE:Leap 15.5",
// "SUSE:Linux Enterprise Server 15 SP5", "Mageia:9"; "" when OSV has none
// (Fedora, CentOS, Amazon Linux, Oracle Linux...).
func rpmEcosystem(d *Distro) string {
	if d == nil {
		return ""
	}
	major, _, _ := strings.Cut(d.VersionID, ".")
	switch d.ID {
	case "rocky":
		return "Rocky Linux:" + major
	case "almalinux":
		return "AlmaLinux:" + major
	case "rhel":
		return "Red Hat:enterprise_linux:" + major
	case "mageia":
		return "Mageia:" + d.VersionID
	case "opensuse-leap", "opensuse-tumbleweed", "opensuse-microos", "opensuse-leap-micro":
		// OSV uses PRETTY_NAME after the vendor: "openSUSE Leap 15.5".
		if rest, ok := strings.CutPrefix(d.PrettyName, "openSUSE "); ok {
			return "openSUSE:" + rest
		}
	case "sles", "sled", "sle-micro", "sles_sap":
		if rest, ok := strings.CutPrefix(d.PrettyName, "SUSE "); ok {
			return "SUSE:" + rest
		}
	}
	return ""
}

func collectRPM(fsys *image.FS, inv *Inventory) error {
	for _, f := range rpmDBPaths {
		data, ok := readDB(fsys, f, inv)
		if !ok {
			continue
		}
		var wal []byte
		if strings.HasSuffix(f, ".sqlite") {
			wal, _ = fsys.ReadFile(f + "-wal")
		}
		pkgs, err := ParseRPMDB(data, wal, f)
		if err != nil {
			return err
		}
		eco := rpmEcosystem(inv.Distro)
		for _, p := range pkgs {
			p.Ecosystem = eco
			p.PURL = purlRPM(inv.Distro, &p)
			inv.Packages = append(inv.Packages, p)
		}
		return nil // the other paths are older or newer homes of the same database
	}
	return nil
}
