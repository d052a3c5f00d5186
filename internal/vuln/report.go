package vuln

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/palisade-dev/palisade/internal/vuln/osv"
	"github.com/palisade-dev/palisade/internal/vuln/pkgdb"
)

// Finding is one advisory affecting one installed package.
type Finding struct {
	ID        string   `json:"id"`
	Aliases   []string `json:"aliases,omitempty"`
	Summary   string   `json:"summary,omitempty"`
	Package   string   `json:"package"`
	Installed string   `json:"installed"`
	Fixed     string   `json:"fixed,omitempty"`
	Severity  string   `json:"severity"`
	Score     float64  `json:"score,omitempty"`
	Vector    string   `json:"vector,omitempty"`
	Ecosystem string   `json:"ecosystem"`
	Type      string   `json:"type"`
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

// Summary counts distinct vulnerabilities by severity.
type Summary struct {
	MaxScore float64  `json:"maxScore"`
	Critical int      `json:"critical"`
	High     int      `json:"high"`
	Medium   int      `json:"medium"`
	Low      int      `json:"low"`
	Unknown  int      `json:"unknown"`
	CVEs     []string `json:"cves,omitempty"`
}

// Summarize counts findings by vulnerability (a CVE found in three packages
// counts once, at its worst severity).
func Summarize(findings []Finding) Summary {
	var s Summary
	worst := map[string]string{}
	cves := map[string]bool{}
	for i := range findings {
		f := &findings[i]
		s.MaxScore = max(s.MaxScore, f.Score)
		id := f.canonicalID()
		if osv.SeverityRank(f.Severity) > osv.SeverityRank(worst[id]) || worst[id] == "" {
			worst[id] = f.Severity
		}
		for _, c := range f.CVEs() {
			cves[c] = true
		}
	}
	for _, sev := range worst {
		switch sev {
		case osv.SeverityCritical:
			s.Critical++
		case osv.SeverityHigh:
			s.High++
		case osv.SeverityMedium:
			s.Medium++
		case osv.SeverityLow, osv.SeverityNone:
			s.Low++
		default:
			s.Unknown++
		}
	}
	for c := range cves {
		s.CVEs = append(s.CVEs, c)
	}
	sort.Strings(s.CVEs)
	return s
}

// Workload attribute names published through Options.OnAttrs.
const (
	AttrMaxCVSS  = "vuln.max_cvss"
	AttrCritical = "vuln.critical"
	AttrHigh     = "vuln.high"
	AttrCVE      = "vuln.cve"
)

// Attrs renders a summary as inventory attributes: numbers as decimals,
// vuln.cve as the set of CVE ids.
func (s Summary) Attrs() map[string][]string {
	return map[string][]string{
		AttrMaxCVSS:  {strconv.FormatFloat(s.MaxScore, 'f', 1, 64)},
		AttrCritical: {strconv.Itoa(s.Critical)},
		AttrHigh:     {strconv.Itoa(s.High)},
		AttrCVE:      append([]string{}, s.CVEs...),
	}
}

// ImageReport is the result of scanning one image.
type ImageReport struct {
	Image        string          `json:"image"` // the reference scanned
	Digest       string          `json:"digest,omitempty"`
	Registry     string          `json:"registry,omitempty"`
	OS           string          `json:"os,omitempty"`
	Arch         string          `json:"arch,omitempty"`
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

// Match looks every package of inv up in the vulnerability database.
func Match(db *osv.Store, inv *pkgdb.Inventory) ([]Finding, error) {
	var qs []osv.Query
	var idx []int
	for i := range inv.Packages {
		p := &inv.Packages[i]
		if p.Ecosystem == "" {
			continue
		}
		qs = append(qs, osv.Query{Ecosystem: p.Ecosystem, Name: p.MatchName(), Version: p.MatchVersion()})
		idx = append(idx, i)
	}
	res, err := db.Match(qs)
	if err != nil {
		return nil, fmt.Errorf("matching packages: %w", err)
	}
	var out []Finding
	for qi, ms := range res {
		p := &inv.Packages[idx[qi]]
		for _, m := range ms {
			f := Finding{
				ID: m.Advisory.ID, Aliases: m.Advisory.AllAliases(), Summary: m.Advisory.Summary,
				Package: p.Name, Installed: p.Version, Fixed: m.Fixed,
				Severity: m.Score.Severity, Score: m.Score.Score, Vector: m.Score.Vector,
				Ecosystem: p.Ecosystem, Type: p.Type, Location: p.Location,
			}
			if p.SourceName != "" && p.SourceName != p.Name {
				f.SourcePackage = p.SourceName
			}
			out = append(out, f)
		}
	}
	sortFindings(out)
	return out, nil
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
