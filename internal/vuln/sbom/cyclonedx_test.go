package sbom

import (
	"testing"

	"github.com/palisade-dev/palisade/internal/vuln"
	"github.com/palisade-dev/palisade/internal/vuln/pkgdb"
)

// TestReachabilityAnalysis: unreachable Go findings carry CycloneDX's
// not_affected / code_not_reachable analysis, reachable ones exploitable
// with the functions found, others none; the severity's source is named.
func TestReachabilityAnalysis(t *testing.T) {
	yes, no := true, false
	rep := &vuln.ImageReport{
		Image: "example/app:1",
		Packages: []pkgdb.Package{
			{Name: "golang.org/x/net", Version: "v0.7.0", Type: "golang", Location: "app"},
			{Name: "zlib", Version: "1:1.2.13.dfsg-1", Type: "deb", Location: "var/lib/dpkg/status"},
		},
		Findings: []vuln.Finding{
			{ID: "GO-2024-3333", Package: "golang.org/x/net", Installed: "v0.7.0", Location: "app", Severity: "MEDIUM",
				Score: 5.3, Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:L", SeveritySource: "GHSA-w32m-9786-jp63 CVSS_V3",
				Reachable: &yes, Precision: "symbol", Symbols: []string{"golang.org/x/net/html.Parse"}},
			{ID: "GO-2023-2102", Package: "golang.org/x/net", Installed: "v0.7.0", Location: "app", Severity: "HIGH", Reachable: &no, Precision: "symbol",
				FixedVersions: []string{"0.17.0"}, Fixed: "0.17.0"},
			{ID: "DEBIAN-CVE-2023-45853", Package: "zlib", Installed: "1:1.2.13.dfsg-1", Location: "var/lib/dpkg/status", Severity: "CRITICAL"},
		},
	}
	doc := CycloneDX(rep, "test")
	got := map[string]*Vulnerability{}
	for i := range doc.Vulnerabilities {
		got[doc.Vulnerabilities[i].ID] = &doc.Vulnerabilities[i]
	}
	if a := got["GO-2024-3333"].Analysis; a == nil || a.State != "exploitable" || a.Detail != "vulnerable code linked into /app: golang.org/x/net/html.Parse" {
		t.Errorf("reachable: %+v", a)
	}
	if r := got["GO-2024-3333"].Ratings[0]; r.Source == nil || r.Source.Name != "GHSA-w32m-9786-jp63 CVSS_V3" || r.Method != "CVSSv31" {
		t.Errorf("rating %+v", r)
	}
	if a := got["GO-2023-2102"].Analysis; a == nil || a.State != "not_affected" || a.Justification != "code_not_reachable" {
		t.Errorf("unreachable: %+v", a)
	}
	if a := got["DEBIAN-CVE-2023-45853"].Analysis; a != nil {
		t.Errorf("OS package finding has an analysis: %+v", a)
	}
}
