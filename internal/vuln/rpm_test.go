package vuln

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/palisade-dev/palisade/internal/vuln/image"
	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
)

// TestRockyRPMImage scans an image whose rpmdb.sqlite was written by rpm
// itself (packages built with rpmbuild, installed with rpm --justdb) and
// matches it against Rocky Linux advisories: RLSA-2024:2447 (openssl fixed
// in 1:3.0.7-27.el9) matches the installed 1:3.0.7-24.el9 through the source
// package of both openssl and openssl-libs; RLSA-2022:6224 (fixed earlier),
// an epoch trap and an AlmaLinux record for bash do not.
func TestRockyRPMImage(t *testing.T) {
	dbDir := vulntest.RPMDB(t,
		vulntest.RPM{Name: "openssl", Version: "3.0.7", Release: "24.el9", Epoch: 1, Sub: "libs"},
		vulntest.RPM{Name: "bash", Version: "5.1.8", Release: "9.el9"})
	db, err := os.ReadFile(filepath.Join(dbDir, "rpmdb.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	img := vulntest.Image(t, vulntest.Layer(t,
		vulntest.File{Path: "etc/os-release", Data: "NAME=\"Rocky Linux\"\nID=\"rocky\"\nVERSION_ID=\"9.3\"\nPRETTY_NAME=\"Rocky Linux 9.3 (Blue Onyx)\"\n"},
		vulntest.File{Path: "usr/lib/sysimage/rpm", Dir: true},
		vulntest.File{Path: "var/lib/rpm", Link: "../../usr/lib/sysimage/rpm"},
		vulntest.File{Path: "usr/lib/sysimage/rpm/rpmdb.sqlite", Data: string(db)},
	))
	reg := vulntest.Registry(t, "", "")
	vulntest.Push(t, img, reg+"/lab/rocky:9", nil)
	svc, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if _, err := svc.ImportDB(t.Context(), filepath.Join("testdata", "osv", "rocky"), nil); err != nil {
		t.Fatal(err)
	}
	rep, err := svc.ScanSource(t.Context(), image.Source{Kind: image.KindRegistry, Ref: reg + "/lab/rocky:9"})
	if err != nil {
		t.Fatal(err)
	}
	var pkgs []string
	for _, p := range rep.Packages {
		pkgs = append(pkgs, p.Type+":"+p.Name+"@"+p.Version+"/"+p.Ecosystem)
	}
	want := []string{"rpm:bash@5.1.8-9.el9/Rocky Linux:9", "rpm:openssl-libs@1:3.0.7-24.el9/Rocky Linux:9", "rpm:openssl@1:3.0.7-24.el9/Rocky Linux:9"}
	sort.Strings(pkgs)
	sort.Strings(want)
	if !slices.Equal(pkgs, want) {
		t.Fatalf("packages = %v, want %v", pkgs, want)
	}
	var got []string
	for _, f := range rep.Findings {
		got = append(got, f.ID+" "+f.Package+" "+f.Installed+" fixed "+f.Fixed)
	}
	sort.Strings(got)
	wantF := []string{
		"RLSA-2024:2447 openssl 1:3.0.7-24.el9 fixed 1:3.0.7-27.el9",
		"RLSA-2024:2447 openssl-libs 1:3.0.7-24.el9 fixed 1:3.0.7-27.el9",
	}
	if !slices.Equal(got, wantF) {
		t.Fatalf("findings = %q, want %q", got, wantF)
	}
}
