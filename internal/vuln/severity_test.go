package vuln

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
)

// TestGitHubAliasScores: the Go database carries no CVSS; with a few
// records in GitHub's OSV format (CVSS vectors, database_specific
// severity) for aliases of Go advisories imported next to it, those Go
// findings get the GitHub scores with the source named, vuln.max_cvss is no
// longer 0, and nothing is reported twice: each GitHub record, which matches
// the same module on its own, is merged into the Go finding it aliases
// (keeping the Go record's symbol-level reachability).
func TestGitHubAliasScores(t *testing.T) {
	svc := goDBService(t)
	reg := vulntest.Registry(t, "", "")
	exe := vulntest.GoBinary(t)
	before, _, rep0 := scanGoBinary(t, svc, reg, "lab/goapp-before", exe)
	if rep0.Summary.MaxScore != 0 {
		t.Fatalf("the Go database alone gives a score: %v", rep0.Summary.MaxScore)
	}
	if _, err := svc.ImportDB(t.Context(), filepath.Join("testdata", "osv", "github"), nil); err != nil {
		t.Fatal(err)
	}
	after, _, rep := scanGoBinary(t, svc, reg, "lab/goapp-after", exe)
	if !slices.Equal(before, after) {
		t.Errorf("importing GitHub records changed the advisories\n before: %v\n after:  %v", before, after)
	}
	seen := map[string]bool{}
	for _, f := range rep.Findings {
		k := f.Package + " " + f.canonicalID()
		if seen[k] {
			t.Errorf("%s reported twice", k)
		}
		seen[k] = true
	}
	want := map[string]struct {
		score  float64
		source string
		reach  bool
	}{
		"GO-2022-1059": {7.5, "GHSA-69ch-w2m2-3vjp CVSS_V3", true},
		"GO-2023-2102": {7.5, "GHSA-4374-p667-p6c8 CVSS_V3", false},
		"GO-2023-1988": {6.1, "GHSA-2wrh-6pvc-2jm9 CVSS_V3", false},
		"GO-2024-3333": {5.3, "GHSA-w32m-9786-jp63 CVSS_V3", true},
	}
	for _, f := range rep.Findings {
		w, ok := want[f.ID]
		if !ok {
			if f.Score != 0 || f.Severity != "UNKNOWN" {
				t.Errorf("%s: score %v %s without a scored alias", f.ID, f.Score, f.Severity)
			}
			continue
		}
		delete(want, f.ID)
		if f.Score != w.score || f.SeveritySource != w.source || f.Reachable == nil || *f.Reachable != w.reach || f.Precision != PrecisionSymbol {
			t.Errorf("%s: score %v from %q, reachable %v (%s); want %v from %q, reachable %v", f.ID, f.Score, f.SeveritySource, deref(f.Reachable), f.Precision, w.score, w.source, w.reach)
		}
		if len(f.Sources) != 2 {
			t.Errorf("%s: merged from %v, want the Go and the GitHub record", f.ID, f.Sources)
		}
	}
	if len(want) > 0 {
		t.Errorf("findings missing: %v", want)
	}
	s := rep.Summary
	if s.MaxScore != 7.5 || s.ReachableMaxScore != 7.5 || s.High != 2 || s.ReachableHigh != 1 {
		t.Errorf("summary: max %v (reachable %v), high %d (reachable %d); want 7.5 (7.5), 2 (1)", s.MaxScore, s.ReachableMaxScore, s.High, s.ReachableHigh)
	}
}

func deref(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

// TestReachableCriticalSelection: a pod whose image's only critical finding
// is unreachable Go code is selected by `vuln.critical > 0` and not by
// `vuln.reachable_critical > 0`; a pod with a critical OS-package finding
// (whose reachability is unknown) is selected by both. The critical score
// of the unreachable advisory comes from a GitHub-format record written by
// this test (GO-2026-6866's functions are in x/net packages the program does
// not link).
func TestReachableCriticalSelection(t *testing.T) {
	ti := buildImages(t)
	inv, err := inventory.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	svc, err := Open(t.TempDir(), Options{
		Registries: []string{"127.0.0.1"},
		OnAttrs:    func(id string, attrs map[string][]string) { inv.SetAttrs(id, "vuln.", attrs) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	importFixtures(t, svc, true)
	dir := t.TempDir()
	rec := `{"schema_version":"1.4.0","id":"GHSA-test-crit-0001","modified":"2026-11-01T00:00:00Z",
	 "aliases":["CVE-2026-97045"],"severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
	 "affected":[{"package":{"ecosystem":"Go","name":"golang.org/x/net"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"0.62.0"}]}]}],
	 "database_specific":{"severity":"CRITICAL"}}`
	if err := os.WriteFile(filepath.Join(dir, "GHSA-test-crit-0001.json"), []byte(rec), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ImportDB(t.Context(), dir, nil); err != nil {
		t.Fatal(err)
	}
	reg := vulntest.Registry(t, "", "")
	goDigest := vulntest.Push(t, ti.gobin, reg+"/lab/goapp:1", nil)
	debDigest := vulntest.Push(t, ti.debian, reg+"/lab/debian:12", nil)
	pods := []inventory.Workload{
		pod("goapp", reg+"/lab/goapp:1", goDigest, nil, ""),
		pod("debian", reg+"/lab/debian:12", debDigest, nil, ""),
	}
	for _, p := range pods {
		inv.Apply(p)
	}
	svc.Observe(pods)
	wait(t, svc)

	gor, ok := svc.Image(goDigest)
	if !ok || gor.Error != "" {
		t.Fatalf("Go image not scanned: %+v", gor)
	}
	for _, f := range gor.Findings {
		if f.Severity == "CRITICAL" && (f.ID != "GO-2026-6866" || f.Reachable == nil || *f.Reachable) {
			t.Errorf("Go image critical finding %s reachable %v: the test expects only the unreachable GO-2026-6866", f.ID, deref(f.Reachable))
		}
	}
	if gor.Summary.Critical != 1 || gor.Summary.ReachableCritical != 0 {
		t.Fatalf("Go image: critical %d, reachable critical %d; want 1, 0", gor.Summary.Critical, gor.Summary.ReachableCritical)
	}
	search := func(q string) []string {
		f, err := filter.Parse(q, inventory.Schema)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, w := range inv.Search(f, inventory.SearchOptions{}) {
			names = append(names, w.Name)
		}
		slices.Sort(names)
		return names
	}
	if got := search("vuln.critical > 0"); !slices.Equal(got, []string{"debian", "goapp"}) {
		t.Errorf("vuln.critical > 0 selects %v, want [debian goapp]", got)
	}
	if got := search("vuln.reachable_critical > 0"); !slices.Equal(got, []string{"debian"}) {
		t.Errorf("vuln.reachable_critical > 0 selects %v, want [debian]", got)
	}
	if got := search(`vuln.reachable_cve contains "CVE-2022-32149" and not vuln.reachable_cve contains "CVE-2026-97045"`); !slices.Equal(got, []string{"goapp"}) {
		t.Errorf("vuln.reachable_cve selects %v, want [goapp]", got)
	}
	if got := search("vuln.reachable_max_cvss >= 9"); !slices.Equal(got, []string{"debian"}) {
		t.Errorf("vuln.reachable_max_cvss >= 9 selects %v, want [debian]", got)
	}
}
