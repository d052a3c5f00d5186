package osv

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	cvss40 "github.com/pandatix/go-cvss/40"
)

// Severity levels, from the CVSS qualitative rating scale.
const (
	SeverityCritical = "CRITICAL"
	SeverityHigh     = "HIGH"
	SeverityMedium   = "MEDIUM"
	SeverityLow      = "LOW"
	SeverityNone     = "NONE"
	SeverityUnknown  = "UNKNOWN"
)

// Rating maps a CVSS base score to its qualitative severity.
func Rating(score float64) string {
	switch {
	case score >= 9:
		return SeverityCritical
	case score >= 7:
		return SeverityHigh
	case score >= 4:
		return SeverityMedium
	case score > 0:
		return SeverityLow
	}
	return SeverityNone
}

// SeverityRank orders levels for sorting and counting (higher is worse).
func SeverityRank(level string) int {
	switch level {
	case SeverityCritical:
		return 5
	case SeverityHigh:
		return 4
	case SeverityMedium:
		return 3
	case SeverityLow:
		return 2
	case SeverityNone:
		return 1
	}
	return 0
}

// Score is the severity of a finding: the highest-versioned CVSS vector
// (v4 over v3), or a qualitative level when no vector is known. Source names
// where it came from: the record and the field ("GHSA-69ch-w2m2-3vjp
// CVSS_V3", "DEBIAN-CVE-2023-45853 Debian urgency medium").
type Score struct {
	Severity string  `json:"severity"`
	Score    float64 `json:"score,omitempty"`
	Vector   string  `json:"vector,omitempty"`
	Source   string  `json:"source,omitempty"`
}

// ParseCVSS computes the base score of a CVSS v3.0, v3.1 or v4.0 vector.
func ParseCVSS(vector string) (float64, error) {
	switch {
	case strings.HasPrefix(vector, "CVSS:3.0/"), strings.HasPrefix(vector, "CVSS:3.1/"):
		return cvss3Score(vector)
	case strings.HasPrefix(vector, "CVSS:4.0/"):
		v, err := cvss40.ParseVector(vector)
		if err != nil {
			return 0, fmt.Errorf("CVSS v4 vector %q: %w", vector, err)
		}
		return v.Score(), nil
	}
	return 0, fmt.Errorf("unsupported CVSS vector %q", vector)
}

var cvss3Weights = map[string]map[string]float64{
	"AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
	"AC": {"L": 0.77, "H": 0.44},
	"PR": {"N": 0.85, "L": 0.62, "H": 0.27},
	"UI": {"N": 0.85, "R": 0.62},
	"S":  {"U": 0, "C": 1},
	"C":  {"H": 0.56, "L": 0.22, "N": 0},
	"I":  {"H": 0.56, "L": 0.22, "N": 0},
	"A":  {"H": 0.56, "L": 0.22, "N": 0},
}

// cvss3Score implements the CVSS v3.1 base score formula (specification
// section 7.1, with the v3.1 Roundup).
func cvss3Score(vector string) (float64, error) {
	parts := strings.Split(vector, "/")
	m := map[string]string{}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(p, ":")
		if !ok {
			return 0, fmt.Errorf("CVSS v3 vector %q: malformed metric %q", vector, p)
		}
		if _, dup := m[k]; dup {
			return 0, fmt.Errorf("CVSS v3 vector %q: metric %s repeated", vector, k)
		}
		m[k] = v
	}
	w := map[string]float64{}
	for k, vals := range cvss3Weights {
		v, ok := m[k]
		if !ok {
			return 0, fmt.Errorf("CVSS v3 vector %q: base metric %s missing", vector, k)
		}
		x, ok := vals[v]
		if !ok {
			return 0, fmt.Errorf("CVSS v3 vector %q: invalid value %s:%s", vector, k, v)
		}
		w[k] = x
	}
	changed := m["S"] == "C"
	pr := w["PR"]
	if changed {
		switch m["PR"] {
		case "L":
			pr = 0.68
		case "H":
			pr = 0.5
		}
	}
	iss := 1 - (1-w["C"])*(1-w["I"])*(1-w["A"])
	var impact float64
	if changed {
		impact = 7.52*(iss-0.029) - 3.25*math.Pow(iss-0.02, 15)
	} else {
		impact = 6.42 * iss
	}
	expl := 8.22 * w["AV"] * w["AC"] * pr * w["UI"]
	if impact <= 0 {
		return 0, nil
	}
	if changed {
		return roundup(math.Min(1.08*(impact+expl), 10)), nil
	}
	return roundup(math.Min(impact+expl, 10)), nil
}

func roundup(x float64) float64 {
	i := int64(math.Round(x * 100000))
	if i%10000 == 0 {
		return float64(i) / 100000
	}
	return float64(i/10000+1) / 10
}

// cvssOf picks the highest-versioned CVSS vector among severity entries.
func cvssOf(sev []Severity) (Score, bool) {
	best, found, bestRank := Score{}, false, -1
	for _, s := range sev {
		rank := 0
		switch s.Type {
		case "CVSS_V4":
			rank = 4
		case "CVSS_V3":
			rank = 3
		default:
			continue
		}
		score, err := ParseCVSS(s.Score)
		if err != nil || rank <= bestRank {
			continue
		}
		best, found, bestRank = Score{Severity: Rating(score), Score: score, Vector: s.Score, Source: s.Type}, true, rank
	}
	return best, found
}

// qualitative maps the documented qualitative scales to CVSS ratings:
// GitHub (LOW, MODERATE, HIGH, CRITICAL), Red Hat (Low, Moderate,
// Important, Critical), Ubuntu (negligible, low, medium, high, critical),
// Debian's security tracker urgency (unimportant, low, medium, high; a
// trailing "*" or "**" marks a guess) and Alpine/NVD-style words.
func qualitative(s string) string {
	switch strings.TrimRight(strings.ToUpper(strings.TrimSpace(s)), "*") {
	case "CRITICAL":
		return SeverityCritical
	case "HIGH", "IMPORTANT":
		return SeverityHigh
	case "MEDIUM", "MODERATE":
		return SeverityMedium
	case "LOW", "NEGLIGIBLE", "UNIMPORTANT":
		return SeverityLow
	}
	return ""
}

// CVSSOf returns the CVSS score an advisory carries for one affected entry:
// the entry's own vectors, then the record's.
func (a *Advisory) CVSSOf(af *Affected) (Score, bool) {
	if af != nil {
		if s, ok := cvssOf(af.Severity); ok {
			s.Source = a.ID + " " + s.Source
			return s, true
		}
	}
	if s, ok := cvssOf(a.Severity); ok {
		s.Source = a.ID + " " + s.Source
		return s, true
	}
	return Score{}, false
}

// QualitativeOf returns a qualitative severity the advisory carries: an
// "Ubuntu" severity entry, or a "severity" (GitHub, Red Hat) or "urgency"
// (Debian: osv.dev's Debian records put it in the entry's
// ecosystem_specific) in database_specific or ecosystem_specific, on the
// entry or the record.
func (a *Advisory) QualitativeOf(af *Affected) (Score, bool) {
	for _, sev := range [][]Severity{affectedSeverity(af), a.Severity} {
		for _, s := range sev {
			if s.Type == "Ubuntu" {
				if lvl := qualitative(s.Score); lvl != "" {
					return Score{Severity: lvl, Source: a.ID + " Ubuntu priority " + s.Score}, true
				}
			}
		}
	}
	var eco json.RawMessage
	if af != nil {
		eco = af.EcosystemSpecific
	}
	for _, raw := range []json.RawMessage{affectedDB(af), eco, a.DatabaseSpecific} {
		var ds struct {
			Severity string `json:"severity"`
			Urgency  string `json:"urgency"`
		}
		if len(raw) == 0 || json.Unmarshal(raw, &ds) != nil {
			continue
		}
		if lvl := qualitative(ds.Severity); lvl != "" {
			return Score{Severity: lvl, Source: a.ID + " severity " + ds.Severity}, true
		}
		if lvl := qualitative(ds.Urgency); lvl != "" {
			return Score{Severity: lvl, Source: a.ID + " urgency " + ds.Urgency}, true
		}
	}
	return Score{}, false
}

// ScoreOf returns the severity of an advisory for one affected entry from
// the record alone: its CVSS vectors, else its qualitative severity, else
// UNKNOWN. Store.Match also consults aliased records (see there).
func (a *Advisory) ScoreOf(af *Affected) Score {
	if s, ok := a.CVSSOf(af); ok {
		return s
	}
	if s, ok := a.QualitativeOf(af); ok {
		return s
	}
	return Score{Severity: SeverityUnknown}
}

func affectedSeverity(af *Affected) []Severity {
	if af == nil {
		return nil
	}
	return af.Severity
}

func affectedDB(af *Affected) json.RawMessage {
	if af == nil {
		return nil
	}
	return af.DatabaseSpecific
}
