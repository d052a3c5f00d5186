package osv

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func ecosystems(a *Advisory) []string {
	var out []string
	for _, af := range a.Affected {
		out = append(out, af.Package.Ecosystem+" "+af.Package.Name)
	}
	return out
}

// TestDistroFormats: Debian tracker JSON and Alpine secdb convert to the
// records osv.dev derives from them; never-affected ("0"), undetermined and
// TEMP- entries are left out; a second branch's secdb adds to the records of
// the first instead of replacing them.
func TestDistroFormats(t *testing.T) {
	s := openStore(t)
	st, err := s.Import(t.Context(), filepath.Join("..", "testdata", "distro"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Converted != 2 || st.Skipped != 0 {
		t.Errorf("stats %+v: want 2 converted documents", st)
	}
	a, ok := s.Get("DEBIAN-CVE-2023-4911")
	if !ok || !slices.Equal(ecosystems(a), []string{"Debian:12 glibc", "Debian:13 glibc"}) || !slices.Equal(a.Upstream, []string{"CVE-2023-4911"}) {
		t.Fatalf("DEBIAN-CVE-2023-4911 = %+v", a)
	}
	if got := a.Affected[0].Ranges[0].Events; len(got) != 2 || got[1].Fixed != "2.36-9+deb12u3" {
		t.Errorf("bookworm events %+v", got)
	}
	if sc := a.ScoreOf(&a.Affected[0]); sc.Severity != SeverityHigh || sc.Source != "DEBIAN-CVE-2023-4911 urgency high" {
		t.Errorf("urgency high: %+v", sc)
	}
	if u, _ := s.Get("DEBIAN-CVE-2010-4756"); u == nil || len(u.Affected[0].Ranges[0].Events) != 1 {
		t.Errorf("open issue: %+v", u)
	}
	for _, absent := range []string{"DEBIAN-CVE-2018-25032", "DEBIAN-TEMP-0000000-1A2B3C", "ALPINE-CVE-2022-1292"} {
		if _, ok := s.Get(absent); ok {
			t.Errorf("%s stored", absent)
		}
	}
	al, ok := s.Get("ALPINE-CVE-2024-2511")
	if !ok || !slices.Equal(ecosystems(al), []string{"Alpine:v3.19 openssl"}) {
		t.Fatalf("ALPINE-CVE-2024-2511 = %+v", al)
	}
	dir := t.TempDir()
	v320 := `{"distroversion":"v3.20","reponame":"main","packages":[{"pkg":{"name":"openssl","secfixes":{"3.3.0-r2":["CVE-2024-2511"]}}}]}`
	if err := os.WriteFile(filepath.Join(dir, "main.json"), []byte(v320), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(t.Context(), dir, nil); err != nil {
		t.Fatal(err)
	}
	al, _ = s.Get("ALPINE-CVE-2024-2511")
	if !slices.Equal(ecosystems(al), []string{"Alpine:v3.19 openssl", "Alpine:v3.20 openssl"}) {
		t.Errorf("after the v3.20 secdb: %v", ecosystems(al))
	}
	res, err := s.Match([]Query{{Ecosystem: "Alpine:v3.20", Name: "openssl", Version: "3.3.0-r1"}, {Ecosystem: "Alpine:v3.19", Name: "openssl", Version: "3.1.4-r5"}})
	if err != nil || len(res[0]) != 1 || len(res[1]) != 1 || res[0][0].Fixed != "3.3.0-r2" || res[1][0].Fixed != "3.1.4-r6" {
		t.Errorf("matches %+v, %v", res, err)
	}
	// Re-importing the same files changes nothing.
	st, err = s.Import(t.Context(), filepath.Join("..", "testdata", "distro"), nil)
	if err != nil || st.Added+st.Updated != 0 {
		t.Errorf("re-import: %+v, %v", st, err)
	}
}

func TestSniff(t *testing.T) {
	for head, want := range map[string]format{
		`{"id":"GO-2022-1059","affected":[]}`:                             formatOSV,
		` { "glibc" : { "CVE-2010-4756": {"releases":{}}}}`:               formatDebianTracker,
		`{"389-ds-base": {"TEMP-0000000-F7A20F": {}}}`:                    formatDebianTracker,
		`{"apkurl":"x","distroversion":"v3.19","packages":[]}`:            formatAlpineSecDB,
		`{"schema_version":"1.6.0","id":"X","packages":[],"secfixes":{}}`: formatOSV,
	} {
		if got := sniff([]byte(head)); got != want {
			t.Errorf("sniff(%s) = %v, want %v", head, got, want)
		}
	}
}
