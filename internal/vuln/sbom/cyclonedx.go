// Package sbom exports an image report as a CycloneDX 1.5 JSON document:
// the packages as components (with package URLs) and the findings as
// vulnerabilities affecting them.
package sbom

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/palisade-dev/palisade/internal/vuln"
)

// Document is the subset of CycloneDX 1.5 Palisade writes.
type Document struct {
	BOMFormat       string          `json:"bomFormat"`
	SpecVersion     string          `json:"specVersion"`
	SerialNumber    string          `json:"serialNumber"`
	Version         int             `json:"version"`
	Metadata        Metadata        `json:"metadata"`
	Components      []Component     `json:"components"`
	Vulnerabilities []Vulnerability `json:"vulnerabilities,omitempty"`
}

type Metadata struct {
	Timestamp string    `json:"timestamp"`
	Tools     Tools     `json:"tools"`
	Component Component `json:"component"`
}

type Tools struct {
	Components []Component `json:"components"`
}

type Component struct {
	BOMRef     string     `json:"bom-ref,omitempty"`
	Type       string     `json:"type"`
	Name       string     `json:"name"`
	Version    string     `json:"version,omitempty"`
	PURL       string     `json:"purl,omitempty"`
	Properties []Property `json:"properties,omitempty"`
}

type Property struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type Vulnerability struct {
	BOMRef      string   `json:"bom-ref,omitempty"`
	ID          string   `json:"id"`
	Source      *Source  `json:"source,omitempty"`
	References  []Ref    `json:"references,omitempty"`
	Ratings     []Rating `json:"ratings,omitempty"`
	Description string   `json:"description,omitempty"`
	Recommend   string   `json:"recommendation,omitempty"`
	// Analysis states reachability: "not_affected" with justification
	// "code_not_reachable" when no vulnerable function of a Go advisory is
	// linked in, "exploitable" when one is.
	Analysis   *Analysis  `json:"analysis,omitempty"`
	Affects    []Affect   `json:"affects"`
	Properties []Property `json:"properties,omitempty"`
}

// Analysis is CycloneDX's vulnerability analysis (impact analysis).
type Analysis struct {
	State         string `json:"state"`
	Justification string `json:"justification,omitempty"`
	Detail        string `json:"detail,omitempty"`
}

type Source struct {
	Name string `json:"name"`
}

type Ref struct {
	ID     string `json:"id"`
	Source Source `json:"source"`
}

type Rating struct {
	Source   *Source `json:"source,omitempty"`
	Score    float64 `json:"score,omitempty"`
	Severity string  `json:"severity"`
	Method   string  `json:"method,omitempty"`
	Vector   string  `json:"vector,omitempty"`
}

type Affect struct {
	Ref string `json:"ref"`
}

// CycloneDX builds the document for a report; tool names the producer.
func CycloneDX(rep *vuln.ImageReport, toolVersion string) *Document {
	doc := &Document{
		BOMFormat: "CycloneDX", SpecVersion: "1.5", SerialNumber: "urn:uuid:" + uuid(), Version: 1,
		Metadata: Metadata{
			Timestamp: time.Now().UTC().Format(time.RFC3339),
			Tools:     Tools{Components: []Component{{Type: "application", Name: "palisade", Version: toolVersion}}},
			Component: Component{BOMRef: "image", Type: "container", Name: rep.Image, Version: rep.Digest},
		},
		Components: []Component{},
	}
	refOf := map[string]string{} // name@version@location → bom-ref
	for i, p := range rep.Packages {
		ref := fmt.Sprintf("pkg-%d", i)
		key := p.Name + "@" + p.Version + "@" + p.Location
		if _, dup := refOf[key]; dup {
			continue
		}
		refOf[key] = ref
		c := Component{BOMRef: ref, Type: "library", Name: p.Name, Version: p.Version, PURL: p.PURL,
			Properties: []Property{{Name: "palisade:package:type", Value: p.Type}, {Name: "palisade:location:0:path", Value: "/" + p.Location}}}
		if p.SourceName != "" {
			c.Properties = append(c.Properties, Property{Name: "palisade:package:source", Value: p.SourceName})
		}
		doc.Components = append(doc.Components, c)
	}
	byID := map[string]int{}
	for _, f := range rep.Findings {
		ref, ok := refOf[f.Package+"@"+f.Installed+"@"+f.Location]
		if !ok {
			continue
		}
		if i, ok := byID[f.ID]; ok {
			v := &doc.Vulnerabilities[i]
			v.Affects = append(v.Affects, Affect{Ref: ref})
			if a := analysisOf(&f); a != nil && (v.Analysis == nil || a.State == "exploitable") {
				v.Analysis = a
			}
			continue
		}
		v := Vulnerability{BOMRef: f.ID, ID: f.ID, Source: &Source{Name: "OSV"}, Description: f.Summary, Affects: []Affect{{Ref: ref}}}
		for _, a := range f.Aliases {
			v.References = append(v.References, Ref{ID: a, Source: Source{Name: aliasSource(a)}})
		}
		r := Rating{Severity: cdxSeverity(f.Severity), Score: f.Score, Vector: f.Vector}
		switch {
		case len(f.Vector) > 8 && f.Vector[:8] == "CVSS:4.0":
			r.Method = "CVSSv4"
		case len(f.Vector) > 8 && f.Vector[:8] == "CVSS:3.1":
			r.Method = "CVSSv31"
		case len(f.Vector) > 8 && f.Vector[:8] == "CVSS:3.0":
			r.Method = "CVSSv3"
		}
		if f.SeveritySource != "" {
			r.Source = &Source{Name: f.SeveritySource}
		}
		v.Ratings = []Rating{r}
		if f.Fixed != "" {
			v.Recommend = "Upgrade " + f.Package + " to " + f.Fixed + " or later"
		}
		v.Analysis = analysisOf(&f)
		if f.Reachable != nil {
			v.Properties = append(v.Properties, Property{Name: "palisade:reachable", Value: strconv.FormatBool(*f.Reachable)},
				Property{Name: "palisade:reachability:precision", Value: f.Precision})
		}
		if len(f.FixedVersions) > 0 {
			v.Properties = append(v.Properties, Property{Name: "palisade:fixed-versions", Value: strings.Join(f.FixedVersions, ", ")})
		}
		byID[f.ID] = len(doc.Vulnerabilities)
		doc.Vulnerabilities = append(doc.Vulnerabilities, v)
	}
	return doc
}

// analysisOf states a finding's reachability (nil when unknown).
func analysisOf(f *vuln.Finding) *Analysis {
	switch {
	case f.Reachable == nil:
		return nil
	case *f.Reachable:
		d := "vulnerable code linked into " + "/" + f.Location
		if len(f.Symbols) > 0 {
			d += ": " + strings.Join(f.Symbols, ", ")
		}
		return &Analysis{State: "exploitable", Detail: d}
	}
	return &Analysis{State: "not_affected", Justification: "code_not_reachable",
		Detail: "no function the advisory names is linked into /" + f.Location}
}

// Write encodes the document as indented JSON.
func Write(w io.Writer, doc *Document) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(doc)
}

func cdxSeverity(s string) string {
	switch s {
	case "CRITICAL", "HIGH", "MEDIUM", "LOW", "NONE":
		return strings.ToLower(s)
	}
	return "unknown"
}

func aliasSource(id string) string {
	switch {
	case len(id) > 4 && id[:4] == "CVE-":
		return "NVD"
	case len(id) > 5 && id[:5] == "GHSA-":
		return "GitHub"
	}
	return "OSV"
}

func uuid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
