package osv

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRedHatScopedEcosystems: Red Hat records name a product stream and
// repository after the release ("Red Hat:enterprise_linux:9::baseos"); a
// package from a RHEL 9 image ("Red Hat:enterprise_linux:9") matches records
// of every repository of that release once, and none of RHEL 8 or of an EUS
// stream. Versions carry Red Hat's explicit epoch ("1:3.0.7-27.el9").
func TestRedHatScopedEcosystems(t *testing.T) {
	s := openStore(t)
	rec := func(id, eco, fixed string) string {
		return `{"schema_version":"1.6.0","id":"` + id + `","modified":"2024-05-01T00:00:00Z","affected":[` +
			`{"package":{"ecosystem":"` + eco + `","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"` + fixed + `"}]}]},` +
			`{"package":{"ecosystem":"` + eco + `::crb","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"` + fixed + `"}]}]}]}`
	}
	dir := t.TempDir()
	for id, r := range map[string]string{
		"RHSA-2024:2447": rec("RHSA-2024:2447", "Red Hat:enterprise_linux:9::appstream", "1:3.0.7-27.el9"),
		"RHSA-2022:6224": rec("RHSA-2022:6224", "Red Hat:enterprise_linux:9::baseos", "1:3.0.1-41.el9_0"),
		"RHSA-2023:0001": rec("RHSA-2023:0001", "Red Hat:enterprise_linux:8::baseos", "1:9.9.9-1.el8"),
		"RHSA-2023:0002": rec("RHSA-2023:0002", "Red Hat:rhel_eus:9.2::baseos", "1:9.9.9-1.el9_2"),
		"RHSA-2023:0003": rec("RHSA-2023:0003", "Red Hat:enterprise_linux:90", "1:9.9.9-1"),
	} {
		if err := os.WriteFile(filepath.Join(dir, id+".json"), []byte(r), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Import(t.Context(), dir, nil); err != nil {
		t.Fatal(err)
	}
	res, err := s.Match([]Query{
		{Ecosystem: "Red Hat:enterprise_linux:9", Name: "openssl", Version: "1:3.0.7-24.el9"},
		{Ecosystem: "Red Hat:enterprise_linux:9", Name: "openssl", Version: "1:3.0.7-27.el9"},
		{Ecosystem: "Rocky Linux:9", Name: "openssl", Version: "1:3.0.7-24.el9"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res[0]) != 1 || res[0][0].Advisory.ID != "RHSA-2024:2447" || res[0][0].Fixed != "1:3.0.7-27.el9" {
		t.Errorf("RHEL 9 openssl 1:3.0.7-24.el9 matches %+v, want RHSA-2024:2447 once", res[0])
	}
	if len(res[1]) != 0 || len(res[2]) != 0 {
		t.Errorf("fixed version or other ecosystem matched: %+v / %+v", res[1], res[2])
	}
	for _, c := range []struct {
		pkg, rec string
		want     bool
	}{
		{"Red Hat:enterprise_linux:9", "Red Hat:enterprise_linux:9::appstream", true},
		{"Red Hat:enterprise_linux:9", "Red Hat:enterprise_linux:90", false},
		{"Rocky Linux:9", "Rocky Linux:9:x", false},
		{"Debian:12", "Debian:12", true},
	} {
		if got := EcosystemMatches(c.pkg, c.rec); got != c.want {
			t.Errorf("EcosystemMatches(%q, %q) = %v", c.pkg, c.rec, got)
		}
	}
}
