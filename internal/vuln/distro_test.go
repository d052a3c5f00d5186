package vuln

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/palisade-dev/palisade/internal/vuln/image"
	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
)

// TestDistroFormatsMatchLikeOSV: the Debian security tracker JSON and the
// Alpine secdb files, made from the same real advisories as the OSV
// fixtures, give the same findings on the Debian and Alpine images as those
// OSV records (compared by package, CVE, installed and fixed version, and
// severity where a CVE record scores it), and the tracker's urgency
// becomes the severity of last resort, with its source named.
func TestDistroFormatsMatchLikeOSV(t *testing.T) {
	ti := buildImages(t)
	reg := vulntest.Registry(t, "", "")
	refs := map[string]string{"debian": reg + "/lab/debian:12", "alpine": reg + "/lab/alpine:3.19"}
	vulntest.Push(t, ti.debian, refs["debian"], nil)
	vulntest.Push(t, ti.alpine, refs["alpine"], nil)

	// OSV side: the OSV fixtures of the same advisories (the synthetic
	// epoch trap has no tracker equivalent).
	osvDir := t.TempDir()
	for _, d := range []string{"debian", "alpine", "cve"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "osv", d, "*.json"))
		for _, f := range files {
			if strings.Contains(f, "TEST-") {
				continue
			}
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(osvDir, filepath.Base(f)), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	scan := func(dirs ...string) map[string][]Finding {
		svc, err := Open(t.TempDir(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer svc.Close()
		for _, d := range dirs {
			if _, err := svc.ImportDB(t.Context(), d, nil); err != nil {
				t.Fatalf("importing %s: %v", d, err)
			}
		}
		out := map[string][]Finding{}
		for name, ref := range refs {
			rep, err := svc.ScanSource(t.Context(), image.Source{Kind: image.KindRegistry, Ref: ref})
			if err != nil {
				t.Fatal(err)
			}
			out[name] = rep.Findings
		}
		return out
	}
	fromOSV := scan(osvDir)
	fromDistro := scan(filepath.Join("testdata", "distro"), filepath.Join("testdata", "osv", "cve"))
	key := func(f Finding) string {
		sev := "unscored"
		if f.Vector != "" {
			sev = f.Severity + " " + f.Vector
		}
		return strings.Join([]string{f.Package, f.canonicalID(), f.Installed, f.Fixed, sev}, " | ")
	}
	for _, name := range []string{"debian", "alpine"} {
		var a, b []string
		for _, f := range fromOSV[name] {
			a = append(a, key(f))
		}
		for _, f := range fromDistro[name] {
			b = append(b, key(f))
		}
		slices.Sort(a)
		slices.Sort(b)
		if len(a) == 0 || !slices.Equal(a, b) {
			t.Errorf("%s: findings differ\n OSV (%d):\n  %s\n distribution format (%d):\n  %s", name, len(a), strings.Join(a, "\n  "), len(b), strings.Join(b, "\n  "))
		} else {
			t.Logf("%s: %d findings, the same from both formats", name, len(a))
		}
	}
	for _, f := range fromDistro["debian"] {
		if f.ID == "DEBIAN-CVE-2010-4756" && (f.Severity != "LOW" || f.SeveritySource != "DEBIAN-CVE-2010-4756 urgency unimportant") {
			t.Errorf("unscored Debian finding: severity %s from %q; want LOW from the tracker's urgency", f.Severity, f.SeveritySource)
		}
	}
}
