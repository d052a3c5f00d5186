package vuln

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/palisade-dev/palisade/internal/vuln/osv"
	"github.com/palisade-dev/palisade/internal/vuln/pkgdb"
	"github.com/palisade-dev/palisade/internal/vuln/version"
)

// Finding is one advisory affecting one installed package.
type Finding struct {
	ID        string   `json:"id"`
	Aliases   []string `json:"aliases,omitempty"`
	Summary   string   `json:"summary,omitempty"`
	Package   string   `json:"package"`
	Installed string   `json:"installed"`
	// Fixed is the lowest fixed version above the installed one;
	// FixedVersions lists every branch's fix the records give.
	Fixed         string   `json:"fixed,omitempty"`
	FixedVersions []string `json:"fixedVersions,omitempty"`
	Severity      string   `json:"severity"`
	Score         float64  `json:"score,omitempty"`
	Vector        string   `json:"vector,omitempty"`
	// SeveritySource names the record and field the severity came from.
	SeveritySource string `json:"severitySource,omitempty"`
	Ecosystem      string `json:"ecosystem"`
	Type           string `json:"type"`
	// Reachable is set for Go findings in binaries whose symbols were read:
	// whether a vulnerable function the record names is linked in.
	// Unset means unknown (not a Go finding, or no symbol table).
	Reachable *bool `json:"reachable,omitempty"`
	// Precision says what Reachable rests on: "symbol" (vulnerable
	// functions or packages) or "module" (the record names none).
	Precision string `json:"precision,omitempty"`
	// Symbols are the vulnerable functions found in the binary.
	Symbols []string `json:"symbols,omitempty"`
	// Sources lists the ids of the records merged into this finding (the
	// same vulnerability from several imported databases).
	Sources []string `json:"sources,omitempty"`
	// SourcePackage is the distribution source package the advisory names,
	// when it differs from Package.
	SourcePackage string `json:"sourcePackage,omitempty"`
	Location      string `json:"location,omitempty"`
	// Image and Workloads are set in listings across images
	// (Service.Vulnerabilities), not inside an ImageReport.
	Image     string   `json:"image,omitempty"`
	Workloads []string `json:"workloads,omitempty"`
}

// CVEs returns the CVE ids among the finding's id and aliases.
func (f *Finding) CVEs() []string {
	var out []string
	for _, id := range append([]string{f.ID}, f.Aliases...) {
		if strings.HasPrefix(id, "CVE-") {
			out = append(out, id)
		}
	}
	return out
}

// canonicalID names the vulnerability for counting: its first CVE, else its id.
func (f *Finding) canonicalID() string {
	if c := f.CVEs(); len(c) > 0 {
		return c[0]
	}
	return f.ID
}

// Summary counts distinct vulnerabilities by severity. The Reachable*
// fields count only findings not known to be unreachable: Go findings
// whose vulnerable functions are absent from the binary are left out;
// findings without reachability information (OS packages, binaries without
// symbols) stay in, so the reachable view never hides what it cannot rule out.
type Summary struct {
	MaxScore float64  `json:"maxScore"`
	Critical int      `json:"critical"`
	High     int      `json:"high"`
	Medium   int      `json:"medium"`
	Low      int      `json:"low"`
	Unknown  int      `json:"unknown"`
	CVEs     []string `json:"cves,omitempty"`

	ReachableMaxScore float64  `json:"reachableMaxScore"`
	ReachableCritical int      `json:"reachableCritical"`
	ReachableHigh     int      `json:"reachableHigh"`
	ReachableCVEs     []string `json:"reachableCves,omitempty"`
	// Unreachable counts the Go vulnerabilities whose code is not linked in.
	Unreachable int `json:"unreachable"`
}

// IsReachable reports whether a finding counts in the reachable view: not
// known to be unreachable.
func (f *Finding) IsReachable() bool { return f.Reachable == nil || *f.Reachable }

type counts struct {
	max                         float64
	critical, high, medium, low int
	unknown                     int
	cves                        []string
}

func count(findings []Finding, keep func(*Finding) bool) counts {
	var c counts
	worst := map[string]string{}
	cves := map[string]bool{}
	for i := range findings {
		f := &findings[i]
		if !keep(f) {
			continue
		}
		c.max = max(c.max, f.Score)
		id := f.canonicalID()
		if osv.SeverityRank(f.Severity) > osv.SeverityRank(worst[id]) || worst[id] == "" {
			worst[id] = f.Severity
		}
		for _, cve := range f.CVEs() {
			cves[cve] = true
		}
	}
	for _, sev := range worst {
		switch sev {
		case osv.SeverityCritical:
			c.critical++
		case osv.SeverityHigh:
			c.high++
		case osv.SeverityMedium:
			c.medium++
		case osv.SeverityLow, osv.SeverityNone:
			c.low++
		default:
			c.unknown++
		}
	}
	for cve := range cves {
		c.cves = append(c.cves, cve)
	}
	sort.Strings(c.cves)
	return c
}

// Summarize counts findings by vulnerability (a CVE found in three packages
// counts once, at its worst severity).
func Summarize(findings []Finding) Summary {
	all := count(findings, func(*Finding) bool { return true })
	r := count(findings, (*Finding).IsReachable)
	unreach := map[string]bool{}
	reach := map[string]bool{}
	for i := range findings {
		if findings[i].IsReachable() {
			reach[findings[i].canonicalID()] = true
		} else {
			unreach[findings[i].canonicalID()] = true
		}
	}
	n := 0
	for id := range unreach {
		if !reach[id] {
			n++
		}
	}
	return Summary{
		MaxScore: all.max, Critical: all.critical, High: all.high, Medium: all.medium, Low: all.low, Unknown: all.unknown, CVEs: all.cves,
		ReachableMaxScore: r.max, ReachableCritical: r.critical, ReachableHigh: r.high, ReachableCVEs: r.cves, Unreachable: n,
	}
}

// Workload attribute names published through Options.OnAttrs.
const (
	AttrMaxCVSS           = "vuln.max_cvss"
	AttrCritical          = "vuln.critical"
	AttrHigh              = "vuln.high"
	AttrCVE               = "vuln.cve"
	AttrReachableMaxCVSS  = "vuln.reachable_max_cvss"
	AttrReachableCritical = "vuln.reachable_critical"
	AttrReachableCVE      = "vuln.reachable_cve"
)

// Attrs renders a summary as inventory attributes: numbers as decimals,
// vuln.cve and vuln.reachable_cve as sets of CVE ids.
func (s Summary) Attrs() map[string][]string {
	return map[string][]string{
		AttrMaxCVSS:           {strconv.FormatFloat(s.MaxScore, 'f', 1, 64)},
		AttrCritical:          {strconv.Itoa(s.Critical)},
		AttrHigh:              {strconv.Itoa(s.High)},
		AttrCVE:               append([]string{}, s.CVEs...),
		AttrReachableMaxCVSS:  {strconv.FormatFloat(s.ReachableMaxScore, 'f', 1, 64)},
		AttrReachableCritical: {strconv.Itoa(s.ReachableCritical)},
		AttrReachableCVE:      append([]string{}, s.ReachableCVEs...),
	}
}

// ImageReport is the result of scanning one image.
type ImageReport struct {
	Image    string `json:"image"` // the reference scanned
	Digest   string `json:"digest,omitempty"`
	Registry string `json:"registry,omitempty"`
	OS       string `json:"os,omitempty"`
	Arch     string `json:"arch,omitempty"`
	Variant  string `json:"variant,omitempty"`
	// Platform is the platform the scan asked for ("linux/amd64"): for a
	// multi-platform index, the one the pod's node runs (the service's
	// default when the node is unknown); OS, Arch and Variant are what the
	// chosen image's config says. OS packages are matched for those.
	Platform     string          `json:"platform,omitempty"`
	Distro       *pkgdb.Distro   `json:"distro,omitempty"`
	Layers       []string        `json:"layers,omitempty"`
	Packages     []pkgdb.Package `json:"packages"`
	Findings     []Finding       `json:"findings"`
	Summary      Summary         `json:"summary"`
	Warnings     []string        `json:"warnings,omitempty"`
	ScannedAt    time.Time       `json:"scannedAt"`
	DBGeneration uint64          `json:"dbGeneration"`
	// Error is set when the scan failed; Packages and Findings are then empty.
	Error string `json:"error,omitempty"`
}

// Match looks every package of inv up in the vulnerability database. Go
// findings are evaluated against their binary: records limited to other
// platforms are dropped, and Reachable says whether the vulnerable code is
// linked in. Findings of several records naming the same vulnerability
// (by id or alias) for the same package are merged into one.
//
// OS packages are matched for platform: records' entries limited to other
// architectures (Alpine secdb archs, arch fields and purl qualifiers of OSV
// records) are not reported; see osv.Affected.AppliesToPlatform.
func Match(db *osv.Store, inv *pkgdb.Inventory, platform osv.Platform) ([]Finding, error) {
	var qs []osv.Query
	var idx []int
	for i := range inv.Packages {
		p := &inv.Packages[i]
		if p.Ecosystem == "" {
			continue
		}
		q := osv.Query{Ecosystem: p.Ecosystem, Name: p.MatchName(), Version: p.MatchVersion(), Platform: platform}
		if p.Type == pkgdb.TypeDeb || p.Type == pkgdb.TypeAPK || p.Type == pkgdb.TypeRPM {
			q.Arch = p.Arch
		}
		qs = append(qs, q)
		idx = append(idx, i)
	}
	res, err := db.Match(qs)
	if err != nil {
		return nil, fmt.Errorf("matching packages: %w", err)
	}
	var out []Finding
	for qi, ms := range res {
		p := &inv.Packages[idx[qi]]
		var group []Finding
		for _, m := range ms {
			f := Finding{
				ID: m.Advisory.ID, Aliases: m.Advisory.AllAliases(), Summary: m.Advisory.Summary,
				Package: p.Name, Installed: p.Version, Fixed: m.Fixed, FixedVersions: m.FixedVersions,
				Severity: m.Score.Severity, Score: m.Score.Score, Vector: m.Score.Vector, SeveritySource: m.Score.Source,
				Ecosystem: p.Ecosystem, Type: p.Type, Location: p.Location,
			}
			if p.SourceName != "" && p.SourceName != p.Name {
				f.SourcePackage = p.SourceName
			}
			if p.Type == pkgdb.TypeGo {
				v := evalGo(m.Advisory, p.Name, p.MatchVersion(), inv.GoBinary(p.Location))
				if !v.applies {
					continue // the record's vulnerable packages are for other platforms
				}
				f.Reachable, f.Precision, f.Symbols = v.reachable, v.precision, v.symbols
			}
			group = append(group, f)
		}
		out = append(out, mergeByAlias(group, version.ForEcosystem(p.Ecosystem))...)
	}
	sortFindings(out)
	return out, nil
}

// mergeByAlias merges findings of one package whose records share an id or
// alias (GO-2022-1059 and GHSA-69ch-w2m2-3vjp, DSA-5514-1 and
// DEBIAN-CVE-…): one finding, the ecosystem's own record as its id, the
// others' ids among its aliases and in Sources, the best-sourced severity,
// every fix, and reachability from the records that name vulnerable code.
func mergeByAlias(fs []Finding, scheme version.Scheme) []Finding {
	if len(fs) < 2 {
		return fs
	}
	parent := make([]int, len(fs))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		if parent[i] != i {
			parent[i] = find(parent[i])
		}
		return parent[i]
	}
	owner := map[string]int{}
	for i := range fs {
		for _, id := range append([]string{fs[i].ID}, fs[i].Aliases...) {
			if j, ok := owner[id]; ok {
				parent[find(i)] = find(j)
			} else {
				owner[id] = i
			}
		}
	}
	groups := map[int][]int{}
	var roots []int
	for i := range fs {
		r := find(i)
		if _, ok := groups[r]; !ok {
			roots = append(roots, r)
		}
		groups[r] = append(groups[r], i)
	}
	out := make([]Finding, 0, len(roots))
	for _, r := range roots {
		members := groups[r]
		if len(members) == 1 {
			out = append(out, fs[members[0]])
			continue
		}
		sort.SliceStable(members, func(a, b int) bool { return primaryRank(&fs[members[a]]) > primaryRank(&fs[members[b]]) })
		m := fs[members[0]]
		ids := map[string]bool{m.ID: true}
		var aliases, sources []string
		for _, i := range members {
			f := &fs[i]
			sources = append(sources, f.ID)
			for _, id := range append([]string{f.ID}, f.Aliases...) {
				if !ids[id] {
					ids[id] = true
					aliases = append(aliases, id)
				}
			}
			if scoreRank(f) > scoreRank(&m) {
				m.Severity, m.Score, m.Vector, m.SeveritySource = f.Severity, f.Score, f.Vector, f.SeveritySource
			}
			if m.Summary == "" {
				m.Summary = f.Summary
			}
			for _, v := range f.FixedVersions {
				if !slices.Contains(m.FixedVersions, v) {
					m.FixedVersions = append(m.FixedVersions, v)
				}
			}
			if f.Fixed != "" && (m.Fixed == "" || version.Compare(scheme, f.Fixed, m.Fixed) < 0) {
				m.Fixed = f.Fixed
			}
		}
		sort.SliceStable(m.FixedVersions, func(a, b int) bool { return version.Compare(scheme, m.FixedVersions[a], m.FixedVersions[b]) < 0 })
		m.Aliases, m.Sources = aliases, sources
		m.Reachable, m.Precision, m.Symbols = mergeReach(fs, members)
		out = append(out, m)
	}
	return out
}

// primaryRank prefers, as a merged finding's id, a record with
// symbol-level reachability, then the ecosystem's own database (not a
// GitHub or CVE record), then a scored one.
func primaryRank(f *Finding) int {
	r := 0
	if f.Precision == PrecisionSymbol {
		r += 4
	}
	if !strings.HasPrefix(f.ID, "GHSA-") && !strings.HasPrefix(f.ID, "CVE-") {
		r += 2
	}
	if f.Score > 0 {
		r++
	}
	return r
}

// scoreRank orders severities by what they rest on: a CVSS vector over a
// qualitative level over nothing.
func scoreRank(f *Finding) int {
	switch {
	case f.Vector != "":
		return 2
	case f.Severity != osv.SeverityUnknown && f.Severity != "":
		return 1
	}
	return 0
}

// mergeReach combines reachability: symbol-level verdicts decide when any
// record gives one (a record without package information cannot overrule
// one that names the vulnerable functions); else module-level ones; else
// unknown.
func mergeReach(fs []Finding, members []int) (*bool, string, []string) {
	for _, prec := range []string{PrecisionSymbol, PrecisionModule} {
		var reach *bool
		var syms []string
		for _, i := range members {
			f := &fs[i]
			if f.Reachable == nil || f.Precision != prec {
				continue
			}
			r := *f.Reachable || (reach != nil && *reach)
			reach = &r
			syms = append(syms, f.Symbols...)
		}
		if reach != nil {
			sort.Strings(syms)
			return reach, prec, slices.Compact(syms)
		}
	}
	return nil, "", nil
}

func sortFindings(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := &fs[i], &fs[j]
		if ra, rb := osv.SeverityRank(a.Severity), osv.SeverityRank(b.Severity); ra != rb {
			return ra > rb
		}
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		if a.Package != b.Package {
			return a.Package < b.Package
		}
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.Location < b.Location
	})
}
