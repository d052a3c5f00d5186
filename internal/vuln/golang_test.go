package vuln

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/palisade-dev/palisade/internal/vuln/image"
	"github.com/palisade-dev/palisade/internal/vuln/sample"
	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
)

// govulncheckBinary runs govulncheck in binary mode with the local database
// and returns the advisories it reports at symbol level (a finding whose
// trace names a function) and at module level (any finding).
func govulncheckBinary(t *testing.T, exe string) (symbol, module []string) {
	t.Helper()
	bin, db := vulntest.Govulncheck(t)
	cmd := exec.Command(bin, "-db", "file://"+db, "-mode=binary", "-json", exe)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("govulncheck: %v\n%s", err, stderr.String())
	}
	sym, mod := map[string]bool{}, map[string]bool{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var msg struct {
			Finding *struct {
				OSV   string `json:"osv"`
				Trace []struct {
					Module   string `json:"module"`
					Package  string `json:"package"`
					Function string `json:"function"`
				} `json:"trace"`
			} `json:"finding"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("govulncheck -json output: %v", err)
		}
		if f := msg.Finding; f != nil {
			mod[f.OSV] = true
			if len(f.Trace) > 0 && f.Trace[0].Function != "" {
				sym[f.OSV] = true
			}
		}
	}
	return sortedSet(sym), sortedSet(mod)
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// goDBService opens a service with the real Go vulnerability data imported.
func goDBService(t *testing.T) *Service {
	t.Helper()
	svc, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	if _, err := svc.ImportDB(t.Context(), vulntest.GoVulnDB(t), nil); err != nil {
		t.Fatal(err)
	}
	return svc
}

// scanGoBinary scans one executable as an image through a registry and
// returns the Go findings: all, and those marked reachable.
func scanGoBinary(t *testing.T, svc *Service, reg, repo string, exe []byte) (all, reachable []string, rep *ImageReport) {
	t.Helper()
	ref := reg + "/" + repo + ":1"
	vulntest.Push(t, vulntest.Image(t, vulntest.Layer(t, vulntest.File{Path: "app/vulnapp", Data: string(exe), Mode: 0o755})), ref, nil)
	rep, err := svc.ScanSource(t.Context(), image.Source{Kind: image.KindRegistry, Ref: ref})
	if err != nil {
		t.Fatal(err)
	}
	a, r := map[string]bool{}, map[string]bool{}
	for _, f := range rep.Findings {
		if f.Ecosystem != "Go" {
			continue
		}
		a[f.ID] = true
		if f.Reachable == nil {
			t.Errorf("%s: Go finding %s has no reachability", repo, f.ID)
		} else if *f.Reachable {
			r[f.ID] = true
		}
	}
	return sortedSet(a), sortedSet(r), rep
}

// TestGovulncheckParity: for the sample program (x/net v0.7.0 and x/text
// v0.3.7, calling only html.Parse and language.ParseAcceptLanguage), the
// reachable Go findings equal govulncheck v1.9.0's symbol-level findings in
// binary mode with a local database built by x/vulndb's cmd/indexdb from
// the same records, advisory for advisory; the module-level findings equal
// its module-level ones; a stripped build (-s -w) gives the same result,
// read from the pclntab (govulncheck itself falls back to module level on
// it).
func TestGovulncheckParity(t *testing.T) {
	dir := t.TempDir()
	full, err := sample.BuildGoApp(filepath.Join(dir, "full"), sample.GoAppBuild{})
	if err != nil {
		t.Fatal(err)
	}
	stripped, err := sample.BuildGoApp(filepath.Join(dir, "stripped"), sample.GoAppBuild{Strip: true})
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "full", "vulnapp")
	wantSym, wantMod := govulncheckBinary(t, exe)
	if len(wantSym) == 0 || len(wantSym) >= len(wantMod) {
		t.Fatalf("govulncheck: %d symbol-level, %d module-level findings: check the test", len(wantSym), len(wantMod))
	}

	svc := goDBService(t)
	reg := vulntest.Registry(t, "", "")
	for _, c := range []struct {
		name string
		exe  []byte
	}{{"full", full}, {"stripped", stripped}} {
		all, reach, rep := scanGoBinary(t, svc, reg, "lab/goapp-"+c.name, c.exe)
		if !slices.Equal(reach, wantSym) {
			t.Errorf("%s: reachable findings differ from govulncheck's symbol-level ones\n ours (%d): %v\n govulncheck (%d): %v", c.name, len(reach), reach, len(wantSym), wantSym)
		}
		if !slices.Equal(all, wantMod) {
			t.Errorf("%s: module-level findings differ from govulncheck's\n ours (%d): %v\n govulncheck (%d): %v", c.name, len(all), all, len(wantMod), wantMod)
		}
		for _, f := range rep.Findings {
			if f.Reachable != nil && *f.Reachable && len(f.Symbols) == 0 && f.Precision == PrecisionSymbol {
				t.Errorf("%s: reachable %s names no symbol", c.name, f.ID)
			}
		}
		s := rep.Summary
		t.Logf("%s: %d Go advisories, %d reachable (govulncheck: %d, %d); summary critical %d/%d reachable, unreachable %d",
			c.name, len(all), len(reach), len(wantMod), len(wantSym), s.Critical, s.ReachableCritical, s.Unreachable)
	}
	// govulncheck on the stripped build: no symbol table, so it reports at
	// module level — the imprecision Palisade's pclntab reading avoids.
	strippedPath := filepath.Join(dir, "stripped", "vulnapp")
	if err := os.WriteFile(strippedPath, stripped, 0o755); err != nil {
		t.Fatal(err)
	}
	sSym, _ := govulncheckBinary(t, strippedPath)
	t.Logf("govulncheck on the stripped build: %d advisories at symbol level (unstripped: %d)", len(sSym), len(wantSym))
}

// TestGoPlatform: GO-2026-6604 limits its vulnerable packages to
// goos windows: it is not reported for the linux build of the sample
// program and is reported (at module level; its functions are not linked
// in) for the windows build.
func TestGoPlatform(t *testing.T) {
	dir := t.TempDir()
	linux, err := sample.BuildGoApp(filepath.Join(dir, "linux"), sample.GoAppBuild{GOOS: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	windows, err := sample.BuildGoApp(filepath.Join(dir, "windows"), sample.GoAppBuild{GOOS: "windows"})
	if err != nil {
		t.Fatal(err)
	}
	svc := goDBService(t)
	reg := vulntest.Registry(t, "", "")
	lAll, _, _ := scanGoBinary(t, svc, reg, "lab/goapp-linux", linux)
	wAll, wReach, _ := scanGoBinary(t, svc, reg, "lab/goapp-windows", windows)
	if slices.Contains(lAll, "GO-2026-6604") {
		t.Error("windows-only GO-2026-6604 reported for the linux binary")
	}
	if !slices.Contains(wAll, "GO-2026-6604") {
		t.Errorf("GO-2026-6604 not reported for the windows binary: %v", wAll)
	}
	if slices.Contains(wReach, "GO-2026-6604") {
		t.Error("GO-2026-6604 reachable in the windows binary, which calls no os.Root method")
	}
	_, wantMod := govulncheckBinary(t, filepath.Join(dir, "windows", "vulnapp"))
	if !slices.Equal(wAll, wantMod) {
		t.Errorf("windows: findings differ from govulncheck's\n ours: %v\n govulncheck: %v", wAll, wantMod)
	}
}
