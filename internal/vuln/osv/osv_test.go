package osv

import (
	"archive/zip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/palisade-dev/palisade/internal/vuln/version"
)

func TestCVSS(t *testing.T) {
	for vec, want := range map[string]float64{
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H": 9.8,
		"CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H": 7.8,
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H": 10.0,
		"CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:H": 5.9,
		"CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N": 6.4,
		"CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:N/I:N/A:N": 0,
		// CVSS v4.0 examples from the FIRST calculator.
		"CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N": 9.3,
		"CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N": 8.5,
	} {
		got, err := ParseCVSS(vec)
		if err != nil || got != want {
			t.Errorf("%s = %v, %v; want %v", vec, got, err, want)
		}
	}
	for _, bad := range []string{"CVSS:3.1/AV:N", "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "CVSS:2.0/AV:N", "CVSS:4.0/AV:N", "", "CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"} {
		if _, err := ParseCVSS(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	a := &Advisory{Severity: []Severity{{"CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}, {"CVSS_V4", "CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}}}
	if s := a.ScoreOf(nil); s.Score != 8.5 || s.Severity != SeverityHigh {
		t.Errorf("v4 preferred over v3: %+v", s)
	}
	g := &Advisory{ID: "GHSA-x", DatabaseSpecific: []byte(`{"severity":"MODERATE"}`)}
	if s := g.ScoreOf(nil); s.Severity != SeverityMedium || s.Source != "GHSA-x severity MODERATE" {
		t.Errorf("GitHub qualitative severity: %+v", s)
	}
	// osv.dev's Debian records: urgency in the entry's ecosystem_specific.
	d := &Advisory{ID: "DEBIAN-CVE-2023-7008", Affected: []Affected{{EcosystemSpecific: []byte(`{"urgency":"low**"}`)}}}
	if s := d.ScoreOf(&d.Affected[0]); s.Severity != SeverityLow || s.Source != "DEBIAN-CVE-2023-7008 urgency low**" {
		t.Errorf("Debian urgency: %+v", s)
	}
	for in, want := range map[string]string{"unimportant": SeverityLow, "not yet assigned": "", "end-of-life": "", "Important": SeverityHigh, "negligible": SeverityLow, "high*": SeverityHigh} {
		if got := qualitative(in); got != want {
			t.Errorf("qualitative(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAffects(t *testing.T) {
	ev := func(kv ...string) []Event {
		var out []Event
		for i := 0; i < len(kv); i += 2 {
			switch kv[i] {
			case "i":
				out = append(out, Event{Introduced: kv[i+1]})
			case "f":
				out = append(out, Event{Fixed: kv[i+1]})
			case "l":
				out = append(out, Event{LastAffected: kv[i+1]})
			}
		}
		return out
	}
	af := &Affected{Ranges: []Range{{Type: "SEMVER", Events: ev("i", "0", "f", "0.3.8", "i", "0.5.0", "f", "0.5.2", "i", "1.0.0", "l", "1.0.3")}}}
	for v, want := range map[string]string{"0.3.7": "0.3.8", "0.3.8": "-", "0.4.0": "-", "0.5.0": "0.5.2", "0.5.2": "-", "1.0.3": "", "1.0.4": "-"} {
		fixed, ok := Affects(version.Semver, af, v)
		if (want == "-") == ok || (ok && fixed != want) {
			t.Errorf("%s: affected=%v fixed=%q, want %q", v, ok, fixed, want)
		}
	}
	// Unsorted events, and explicit versions.
	af = &Affected{Versions: []string{"1.0.1"}, Ranges: []Range{{Type: "ECOSYSTEM", Events: ev("f", "1:2.0-1", "i", "1:1.0-1")}}}
	for v, want := range map[string]bool{"1:1.5-1": true, "1.9": false, "1:2.0-1": false, "1.0.1": true} {
		if _, ok := Affects(version.Dpkg, af, v); ok != want {
			t.Errorf("dpkg %s: affected=%v, want %v", v, ok, want)
		}
	}
}

func openStore(t *testing.T) *Store {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := NewStore(db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestImportZipAndUpdateInPlace: a zip export imports; importing a changed
// record replaces it and its index entries; unchanged data keeps the
// generation.
func TestImportZipAndUpdateInPlace(t *testing.T) {
	s := openStore(t)
	write := func(name string, files map[string]string) string {
		p := filepath.Join(t.TempDir(), name)
		f, _ := os.Create(p)
		zw := zip.NewWriter(f)
		for n, d := range files {
			w, _ := zw.Create(n)
			w.Write([]byte(d))
		}
		zw.Close()
		f.Close()
		return p
	}
	v1 := `{"id":"PYSEC-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"PyPI","name":"Requests"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.32.0"}]}]}]}`
	v2 := `{"id":"PYSEC-1","modified":"2024-02-01T00:00:00Z","affected":[{"package":{"ecosystem":"PyPI","name":"urllib3"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.0.7"}]}]}]}`
	st, err := s.Import(t.Context(), write("a.zip", map[string]string{"PYSEC-1.json": v1, "README.md": "x", "bad.json": "{"}), nil)
	if err != nil || st.Added != 1 || st.Skipped != 1 || st.Info.Generation != 1 {
		t.Fatalf("first import: %+v, %v", st, err)
	}
	q := []Query{{Ecosystem: "PyPI", Name: "requests", Version: "2.31.0"}, {Ecosystem: "PyPI", Name: "urllib3", Version: "2.0.6"}}
	m, _ := s.Match(q)
	if len(m[0]) != 1 || len(m[1]) != 0 || m[0][0].Fixed != "2.32.0" {
		t.Fatalf("matches before update: %+v", m)
	}
	st, _ = s.Import(t.Context(), write("b.zip", map[string]string{"PYSEC-1.json": v1}), nil)
	if st.Updated != 0 || st.Added != 0 || st.Info.Generation != 1 {
		t.Errorf("re-import of the same data: %+v", st)
	}
	st, _ = s.Import(t.Context(), write("c.zip", map[string]string{"PYSEC-1.json": v2}), nil)
	if st.Updated != 1 || st.Info.Generation != 2 || st.Info.Advisories != 1 {
		t.Errorf("update: %+v", st)
	}
	m, _ = s.Match(q)
	if len(m[0]) != 0 || len(m[1]) != 1 {
		t.Errorf("matches after update: %+v", m)
	}
	if _, err := s.Import(t.Context(), write("d.zip", map[string]string{"x.json": "[]"}), nil); err == nil || !strings.Contains(err.Error(), "none of the 1 JSON documents") {
		t.Errorf("all-invalid import: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	data, _ := os.ReadFile("../testdata/osv/debian/DEBIAN-CVE-2023-45853.json")
	f.Add(data)
	f.Add([]byte(`{"id":"X","severity":[{"type":"CVSS_V4","score":"CVSS:4.0/AV:N"}],"affected":[{"package":{"ecosystem":"Go","name":"a"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"last_affected":"1"}]}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := Parse(data)
		if err != nil {
			return
		}
		for i := range a.Affected {
			a.ScoreOf(&a.Affected[i])
			Affects(version.ForEcosystem(a.Affected[i].Package.Ecosystem), &a.Affected[i], "1.0.0")
		}
	})
}

func FuzzParseCVSS(f *testing.F) {
	f.Add("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")
	f.Add("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N")
	f.Fuzz(func(t *testing.T, vec string) {
		s, err := ParseCVSS(vec)
		if err == nil && (s < 0 || s > 10) {
			t.Fatalf("%q scored %v", vec, s)
		}
	})
}
