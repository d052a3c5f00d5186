// Package osv reads vulnerability records in the OSV format
// (https://ossf.github.io/osv-schema/), stores them in an embedded bbolt
// database indexed by ecosystem and package, and matches installed package
// versions against their affected ranges with the ecosystem's own version
// ordering (see package version).
package osv

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Advisory is one OSV record, reduced to what matching and reports need.
type Advisory struct {
	ID               string          `json:"id"`
	Modified         time.Time       `json:"modified"`
	Published        time.Time       `json:"published,omitzero"`
	Withdrawn        *time.Time      `json:"withdrawn,omitempty"`
	Aliases          []string        `json:"aliases,omitempty"`
	Upstream         []string        `json:"upstream,omitempty"`
	Related          []string        `json:"related,omitempty"`
	Summary          string          `json:"summary,omitempty"`
	Details          string          `json:"details,omitempty"`
	Severity         []Severity      `json:"severity,omitempty"`
	Affected         []Affected      `json:"affected,omitempty"`
	DatabaseSpecific json.RawMessage `json:"database_specific,omitempty"`
}

// Severity is an OSV severity entry: a type and a CVSS vector (or a
// qualitative score for the "Ubuntu" type).
type Severity struct {
	Type  string `json:"type"`
	Score string `json:"score"`
}

// Affected is one affected package of an advisory.
type Affected struct {
	Package           Package         `json:"package"`
	Severity          []Severity      `json:"severity,omitempty"`
	Ranges            []Range         `json:"ranges,omitempty"`
	Versions          []string        `json:"versions,omitempty"`
	EcosystemSpecific json.RawMessage `json:"ecosystem_specific,omitempty"`
	DatabaseSpecific  json.RawMessage `json:"database_specific,omitempty"`
}

// Package names a package in an ecosystem ("Go", "Debian:12", "Alpine:v3.19").
type Package struct {
	Ecosystem string `json:"ecosystem"`
	Name      string `json:"name"`
	Purl      string `json:"purl,omitempty"`
}

// Range is a list of version events; Type is SEMVER, ECOSYSTEM or GIT.
type Range struct {
	Type   string  `json:"type"`
	Events []Event `json:"events"`
}

// Event is one range event; exactly one field is set.
type Event struct {
	Introduced   string `json:"introduced,omitempty"`
	Fixed        string `json:"fixed,omitempty"`
	LastAffected string `json:"last_affected,omitempty"`
	Limit        string `json:"limit,omitempty"`
}

// MaxRecordSize bounds one OSV JSON document; the largest real records
// (kernel advisories listing every version) are a few megabytes.
const MaxRecordSize = 32 << 20

// Parse decodes and validates one OSV JSON record.
func Parse(data []byte) (*Advisory, error) {
	if len(data) > MaxRecordSize {
		return nil, fmt.Errorf("record of %d bytes exceeds the %d byte limit", len(data), MaxRecordSize)
	}
	var a Advisory
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("not an OSV record: %w", err)
	}
	if a.ID == "" {
		return nil, errors.New("OSV record has no id")
	}
	if strings.ContainsAny(a.ID, "\x00/") || len(a.ID) > 256 {
		return nil, fmt.Errorf("OSV record has an invalid id %q", a.ID)
	}
	for i, af := range a.Affected {
		if af.Package.Ecosystem == "" || af.Package.Name == "" {
			if af.Package.Purl == "" {
				return nil, fmt.Errorf("%s: affected[%d] names no package", a.ID, i)
			}
		}
		if strings.ContainsRune(af.Package.Ecosystem+af.Package.Name, 0) {
			return nil, fmt.Errorf("%s: affected[%d] has a NUL in its package name", a.ID, i)
		}
	}
	return &a, nil
}

// AllAliases returns the aliases and upstream ids, deduplicated, in order.
func (a *Advisory) AllAliases() []string {
	seen := map[string]bool{a.ID: true}
	var out []string
	for _, s := range append(append([]string{}, a.Aliases...), a.Upstream...) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
