package pkgdb

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
)

// testRPMs are built with rpmbuild and installed into a real rpmdb.sqlite.
var testRPMs = []vulntest.RPM{
	{Name: "openssl", Version: "3.0.7", Release: "24.el9", Epoch: 1, Sub: "libs"},
	{Name: "bash", Version: "5.1.8", Release: "9.el9"},
}

const rockyRelease = "NAME=\"Rocky Linux\"\nVERSION=\"9.3 (Blue Onyx)\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n" +
	"VERSION_ID=\"9.3\"\nPLATFORM_ID=\"platform:el9\"\nPRETTY_NAME=\"Rocky Linux 9.3 (Blue Onyx)\"\n"

func readRPMDB(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(vulntest.RPMDB(t, testRPMs...), "rpmdb.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func checkTestRPMs(t *testing.T, pkgs []Package, location, eco string) {
	t.Helper()
	got := map[string]Package{}
	for _, p := range pkgs {
		got[p.Name] = p
	}
	want := map[string][3]string{ // version, source, arch
		"openssl":      {"1:3.0.7-24.el9", "openssl", "noarch"},
		"openssl-libs": {"1:3.0.7-24.el9", "openssl", "noarch"},
		"bash":         {"5.1.8-9.el9", "bash", "noarch"},
	}
	if len(got) != len(want) || len(pkgs) != len(want) {
		t.Fatalf("packages = %+v", pkgs)
	}
	for name, w := range want {
		p := got[name]
		if p.Version != w[0] || p.SourceName != w[1] || p.Arch != w[2] || p.Type != TypeRPM || p.Location != location ||
			p.Ecosystem != eco || p.MatchName() != w[1] || p.MatchVersion() != w[0] {
			t.Errorf("%s = %+v, want version %s source %s arch %s ecosystem %q", name, p, w[0], w[1], w[2], eco)
		}
	}
}

func TestRPMDBSQLite(t *testing.T) {
	db := readRPMDB(t)
	for _, loc := range []string{"var/lib/rpm/rpmdb.sqlite", "usr/lib/sysimage/rpm/rpmdb.sqlite"} {
		if !Keep(loc) || !Keep(loc+"-wal") {
			t.Fatalf("Keep(%s) = false", loc)
		}
		inv, err := Collect(fsOf(map[string]string{loc: string(db), "etc/os-release": rockyRelease}, nil))
		if err != nil {
			t.Fatal(err)
		}
		checkTestRPMs(t, inv.Packages, loc, "Rocky Linux:9")
		for _, p := range inv.Packages {
			if p.Name == "openssl-libs" && p.PURL != "pkg:rpm/rocky/openssl-libs@3.0.7-24.el9?arch=noarch&distro=rocky-9.3&epoch=1&upstream=openssl" {
				t.Errorf("purl = %s", p.PURL)
			}
		}
	}
}

// TestRPMDBWAL checks that pages committed to rpmdb.sqlite-wal but not yet
// checkpointed are read: the write-ahead log is produced by sqlite3 itself.
func TestRPMDBWAL(t *testing.T) {
	if _, err := exec.LookPath("sqlite3"); err != nil {
		t.Fatal("sqlite3 not installed: scripts/ensure-deps.sh installs it (apt-get install sqlite3)")
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "rpmdb.sqlite")
	if err := os.WriteFile(f, readRPMDB(t), 0o644); err != nil {
		t.Fatal(err)
	}
	// Delete bash in a WAL transaction and copy the database and its log
	// while the connection is open (automatic checkpoints are off).
	cmd := exec.Command("sqlite3", f)
	cmd.Stdin = strings.NewReader("PRAGMA journal_mode=WAL;\nPRAGMA wal_autocheckpoint=0;\n" +
		"DELETE FROM Packages WHERE hnum = (SELECT hnum FROM Name WHERE key = 'bash');\n" +
		".shell cp " + f + " " + f + ".keep; cp " + f + "-wal " + f + "-wal.keep\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sqlite3: %v\n%s", err, out)
	}
	main, _ := os.ReadFile(f + ".keep")
	wal, err := os.ReadFile(f + "-wal.keep")
	if err != nil || len(wal) == 0 {
		t.Fatalf("sqlite3 kept no write-ahead log (%v)", err)
	}
	pkgs, err := ParseRPMDB(main, wal, "rpmdb.sqlite")
	if err != nil {
		t.Fatal(err)
	}
	// Without its log the database still holds bash.
	alone, err := ParseRPMDB(main, nil, "rpmdb.sqlite")
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 2 || len(alone) != 3 {
		t.Fatalf("with log %+v; main file alone %+v", pkgs, alone)
	}
}

// TestRPMDBBerkeley writes the real headers of the SQLite database into a
// Berkeley DB hash database with libdb's own db_load (rpm ≤ 4.15's format:
// key the header number, value the header blob; key 0 the instance counter).
func TestRPMDBBerkeley(t *testing.T) {
	load := ""
	for _, n := range []string{"db5.3_load", "db_load"} {
		if p, err := exec.LookPath(n); err == nil {
			load = p
			break
		}
	}
	if load == "" {
		t.Fatal("db_load not found: run `apt-get install db5.3-util`")
	}
	var blobs [][]byte
	if err := sqliteRPMBlobs(readRPMDB(t), nil, func(b []byte) error { blobs = append(blobs, b); return nil }); err != nil {
		t.Fatal(err)
	}
	var dump bytes.Buffer
	dump.WriteString("VERSION=3\nformat=bytevalue\ntype=hash\nHEADER=END\n")
	hexline := func(b []byte) { fmt.Fprintf(&dump, " %x\n", b) }
	le := func(n uint32) []byte { return binary.LittleEndian.AppendUint32(nil, n) }
	hexline(le(0))
	hexline(le(uint32(len(blobs) + 1)))
	for i, b := range blobs {
		hexline(le(uint32(i + 1)))
		hexline(b)
	}
	dump.WriteString("DATA=END\n")
	dir := t.TempDir()
	cmd := exec.Command(load, "-f", "/dev/stdin", filepath.Join(dir, "Packages"))
	cmd.Stdin = &dump
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", load, err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "Packages"))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := Collect(fsOf(map[string]string{"var/lib/rpm/Packages": string(data),
		"etc/os-release": "ID=\"almalinux\"\nVERSION_ID=\"8.10\"\n"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	checkTestRPMs(t, inv.Packages, "var/lib/rpm/Packages", "AlmaLinux:8")
}

func TestRPMEcosystems(t *testing.T) {
	for _, c := range []struct {
		d    Distro
		want string
	}{
		{Distro{ID: "rocky", VersionID: "9.3"}, "Rocky Linux:9"},
		{Distro{ID: "almalinux", VersionID: "8.10"}, "AlmaLinux:8"},
		{Distro{ID: "rhel", VersionID: "9.4"}, "Red Hat:enterprise_linux:9"},
		{Distro{ID: "opensuse-leap", VersionID: "15.5", PrettyName: "openSUSE Leap 15.5"}, "openSUSE:Leap 15.5"},
		{Distro{ID: "opensuse-tumbleweed", PrettyName: "openSUSE Tumbleweed"}, "openSUSE:Tumbleweed"},
		{Distro{ID: "sles", VersionID: "15.5", PrettyName: "SUSE Linux Enterprise Server 15 SP5"}, "SUSE:Linux Enterprise Server 15 SP5"},
		{Distro{ID: "fedora", VersionID: "40"}, ""},
	} {
		if got := c.d.Ecosystem(); got != c.want {
			t.Errorf("%+v: ecosystem %q, want %q", c.d, got, c.want)
		}
	}
	for file, want := range map[string]string{
		"openssl-3.0.7-24.el9.src.rpm": "openssl", "python3.11-3.11.7-1.el9.src.rpm": "python3.11",
		"foo.noarch.rpm": "", "x-1.src.rpm": "", "": "",
	} {
		if got := sourceRPMName(file); got != want {
			t.Errorf("sourceRPMName(%q) = %q, want %q", file, got, want)
		}
	}
}

func TestCorruptRPMDB(t *testing.T) {
	db := readRPMDB(t)
	trunc := db[:len(db)/2]
	badPage := append([]byte(nil), db...)
	binary.BigEndian.PutUint16(badPage[16:18], 1000)
	for _, c := range []struct{ data, want string }{
		{"not a database at all", "var/lib/rpm/rpmdb.sqlite: neither an SQLite nor a Berkeley DB"},
		{string(trunc), "var/lib/rpm/rpmdb.sqlite: "},
		{string(badPage), "var/lib/rpm/rpmdb.sqlite: SQLite header: invalid page size 1000"},
		{sqliteMagic + strings.Repeat("\x00", 200), "var/lib/rpm/rpmdb.sqlite: SQLite header: invalid page size 0"},
	} {
		_, err := Collect(fsOf(map[string]string{"var/lib/rpm/rpmdb.sqlite": c.data}, nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.20q: err = %v, want %q", c.data, err, c.want)
		}
	}
	// Every single-byte corruption of the real database errors or parses,
	// never panics; sample the bytes to keep the test fast.
	for i := 0; i < len(db); i += 37 {
		b := append([]byte(nil), db...)
		b[i] ^= 0xff
		_, _ = ParseRPMDB(b, nil, "rpmdb.sqlite")
	}
}

// FuzzParseRPMDB feeds hostile databases (SQLite, its write-ahead log,
// Berkeley DB, raw headers) to the rpm parsers: errors, never panics.
func FuzzParseRPMDB(f *testing.F) {
	f.Add([]byte(sqliteMagic+"\x10\x00"), []byte(nil))
	bdb := make([]byte, 1024)
	binary.LittleEndian.PutUint32(bdb[12:], bdbHashMagic)
	binary.LittleEndian.PutUint32(bdb[20:], 512)
	bdb[25] = bdbPHashMeta
	binary.LittleEndian.PutUint32(bdb[32:], 1)
	bdb[512+25] = bdbPHash
	f.Add(bdb, []byte(nil))
	f.Add(readRPMDB(f), []byte(nil)) // a real database, for the mutator to corrupt
	f.Fuzz(func(t *testing.T, data, wal []byte) {
		pkgs, err := ParseRPMDB(data, wal, "rpmdb")
		if err != nil && !strings.HasPrefix(err.Error(), "rpmdb: ") {
			t.Fatalf("error does not name the file: %v", err)
		}
		for _, p := range pkgs {
			if p.Name == "" || p.Version == "" {
				t.Fatalf("empty package %+v", p)
			}
		}
		_, _ = parseRPMHeader(data)
	})
}
