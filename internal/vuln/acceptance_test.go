package vuln

import (
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"golang.org/x/mod/semver"

	"github.com/palisade-dev/palisade/internal/vuln/image"
	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
)

// expectedGoAdvisories computes, independently of package osv, which
// advisories of the golang.org/x/vulndb data affect the modules of a
// binary built for goos: golang.org/x/mod/semver over the SEMVER events of
// each record, leaving out entries whose every vulnerable package is
// limited to other operating systems.
func expectedGoAdvisories(t *testing.T, dir string, modules map[string]string, goos string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) < 1000 {
		t.Fatalf("golang.org/x/vulndb data/osv at %s: %d files, %v", dir, len(files), err)
	}
	want := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rec struct {
			ID        string `json:"id"`
			Withdrawn string `json:"withdrawn"`
			Affected  []struct {
				Package struct{ Name, Ecosystem string } `json:"package"`
				Ranges  []struct {
					Type   string              `json:"type"`
					Events []map[string]string `json:"events"`
				} `json:"ranges"`
				EcosystemSpecific struct {
					Imports []struct {
						GOOS []string `json:"goos"`
					} `json:"imports"`
				} `json:"ecosystem_specific"`
			} `json:"affected"`
		}
		if err := json.Unmarshal(data, &rec); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if rec.Withdrawn != "" {
			continue
		}
		for _, af := range rec.Affected {
			ver, ok := modules[af.Package.Name]
			if !ok || af.Package.Ecosystem != "Go" {
				continue
			}
			if imps := af.EcosystemSpecific.Imports; len(imps) > 0 {
				onOS := false
				for _, im := range imps {
					onOS = onOS || len(im.GOOS) == 0 || slices.Contains(im.GOOS, goos)
				}
				if !onOS {
					continue
				}
			}
			v := "v" + strings.TrimPrefix(strings.TrimPrefix(ver, "v"), "go")
			for _, r := range af.Ranges {
				if r.Type != "SEMVER" {
					continue
				}
				// Affected when some introduced ≤ v with no fixed in (introduced, v].
				for _, e := range r.Events {
					intro, ok := e["introduced"]
					if !ok {
						continue
					}
					iv := "v" + intro
					if intro == "0" {
						iv = "v0.0.0-0"
					}
					if semver.Compare(iv, v) > 0 {
						continue
					}
					closed := false
					for _, e2 := range r.Events {
						if fx, ok := e2["fixed"]; ok && semver.Compare("v"+fx, iv) > 0 && semver.Compare("v"+fx, v) <= 0 {
							closed = true
						}
						if la, ok := e2["last_affected"]; ok && semver.Compare("v"+la, iv) >= 0 && semver.Compare("v"+la, v) < 0 {
							closed = true
						}
					}
					if !closed {
						want[rec.ID] = true
					}
				}
			}
		}
	}
	return want
}

// TestGoBinaryVulnDB: with the real golang.org/x/vulndb data imported, the Go
// binary's findings are exactly the advisories whose ranges include its
// module versions, minus those whose vulnerable packages are all limited to
// other operating systems (GO-2026-6604: windows only): GO-2022-1059 and the
// x/net advisories open at v0.7.0, none fixed at or before those versions.
func TestGoBinaryVulnDB(t *testing.T) {
	ti := buildImages(t)
	reg := vulntest.Registry(t, "", "")
	vulntest.Push(t, ti.gobin, reg+"/lab/goapp:1", nil)
	svc, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	osvDir := vulntest.GoVulnDB(t)
	if _, err := svc.ImportDB(t.Context(), osvDir, nil); err != nil {
		t.Fatal(err)
	}
	rep, err := svc.ScanSource(t.Context(), image.Source{Kind: image.KindRegistry, Ref: reg + "/lab/goapp:1"})
	if err != nil {
		t.Fatal(err)
	}

	bi, err := buildinfo.Read(bytes.NewReader(ti.goBinary))
	if err != nil {
		t.Fatal(err)
	}
	modules := map[string]string{"stdlib": bi.GoVersion}
	for _, d := range bi.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		modules[d.Path] = d.Version
	}
	for m, v := range vulntest.GoBinaryModules {
		if modules[m] != v {
			t.Fatalf("test binary links %s %s, want %s", m, modules[m], v)
		}
	}
	want := expectedGoAdvisories(t, osvDir, modules, "linux")
	if !want["GO-2022-1059"] {
		t.Fatal("the independent computation misses GO-2022-1059: check the test")
	}
	if want["GO-2026-6604"] || !expectedGoAdvisories(t, osvDir, modules, "windows")["GO-2026-6604"] {
		t.Fatal("the independent computation should leave the windows-only GO-2026-6604 out for linux only: check the test")
	}
	got := map[string]bool{}
	for _, f := range rep.Findings {
		got[f.ID] = true
	}
	var missing, extra, xnet []string
	for id := range want {
		if !got[id] {
			missing = append(missing, id)
		}
	}
	for id := range got {
		if !want[id] {
			extra = append(extra, id)
		}
	}
	for _, f := range rep.Findings {
		if f.Package == "golang.org/x/net" {
			xnet = append(xnet, f.ID)
		}
		if f.Package == "golang.org/x/net" && f.Fixed != "" && semver.Compare("v"+f.Fixed, "v0.7.0") <= 0 {
			t.Errorf("%s reported for x/net v0.7.0 although fixed in %s", f.ID, f.Fixed)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("Go findings differ from the OSV ranges: missing %v, extra %v", missing, extra)
	}
	if len(xnet) == 0 {
		t.Error("no golang.org/x/net advisory at v0.7.0")
	}
	t.Logf("%d Go advisories (%d for x/net v0.7.0) over %d advisories in x/vulndb", len(got), len(slices.Compact(xnet)), len(want))
}

type syftArtifact struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Type    string `json:"type"`
}

// runSyft catalogs ref with syft and returns its packages of one type.
func runSyft(t testing.TB, ref, typ string) []string {
	t.Helper()
	cmd := exec.Command(vulntest.Syft(t), "scan", ref, "-o", "syft-json", "-q")
	cmd.Env = append(os.Environ(), "SYFT_CHECK_FOR_APP_UPDATE=false", "SYFT_REGISTRY_INSECURE_USE_HTTP=true")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("syft scan %s: %v\n%s", ref, err, stderr.String())
	}
	var doc struct {
		Artifacts []syftArtifact `json:"artifacts"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("syft output: %v", err)
	}
	var pkgs []string
	for _, a := range doc.Artifacts {
		if a.Type == typ {
			pkgs = append(pkgs, a.Name+"@"+a.Version)
		}
	}
	sort.Strings(pkgs)
	return pkgs
}

func ourPackages(r *ImageReport, typ string) []string {
	var pkgs []string
	for _, p := range r.Packages {
		if p.Type == typ {
			pkgs = append(pkgs, p.Name+"@"+p.Version)
		}
	}
	sort.Strings(pkgs)
	return slices.Compact(pkgs)
}

// TestSyftParity: the package sets of the debootstrap Debian image (a) and of
// the Go binary image (c) equal what syft v1.57.1 reports for the same images
// pulled from the same registry.
func TestSyftParity(t *testing.T) {
	vulntest.Syft(t) // fail early with the fix if syft is missing
	ti := buildImages(t)
	reg := vulntest.Registry(t, "", "")
	debRef := reg + "/lab/bookworm-minbase:1"
	vulntest.Push(t, vulntest.Image(t, vulntest.DirLayer(t, vulntest.DebianRootfs(t))), debRef, nil)
	goRef := reg + "/lab/goapp:1"
	vulntest.Push(t, ti.gobin, goRef, nil)

	svc, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	for _, c := range []struct{ ref, ourType, syftType string }{
		{debRef, "deb", "deb"},
		{goRef, "golang", "go-module"},
	} {
		rep, err := svc.ScanSource(t.Context(), image.Source{Kind: image.KindRegistry, Ref: c.ref})
		if err != nil {
			t.Fatal(err)
		}
		ours := ourPackages(rep, c.ourType)
		for i, p := range ours {
			// A main module built without version information is "(devel)"
			// in Go's build information (and in our report); syft says UNKNOWN.
			ours[i] = strings.Replace(p, "@(devel)", "@UNKNOWN", 1)
		}
		theirs := runSyft(t, "registry:"+c.ref, c.syftType)
		if !slices.Equal(ours, theirs) {
			t.Errorf("%s: package sets differ\n ours  (%d): %v\n syft (%d): %v", c.ref, len(ours), ours, len(theirs), theirs)
		} else {
			t.Logf("%s: %d %s packages, same as syft", c.ref, len(ours), c.ourType)
		}
	}
}
