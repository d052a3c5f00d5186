package osv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Besides OSV records, Import reads the two formats distributions publish
// their security data in, converted to the records osv.dev derives from
// them (same ids, ecosystems and ranges), so a finding is the same whichever
// form was imported:
//
//   - Debian's security tracker JSON
//     (https://security-tracker.debian.org/tracker/data/json): source
//     package → CVE → release → status, fixed_version, urgency. Each
//     (CVE, package, release) becomes an affected entry of DEBIAN-<CVE>
//     in ecosystem "Debian:<version>": fixed at fixed_version when
//     resolved, unfixed when open; fixed_version "0" (never affected) and
//     undetermined entries are left out. The urgency is kept as
//     database_specific.urgency (a severity of last resort).
//   - Alpine's secdb (https://secdb.alpinelinux.org/<branch>/<repo>.json):
//     package → secfixes (fixed version → CVEs). Each CVE becomes an
//     affected entry of ALPINE-<CVE> in ecosystem "Alpine:<branch>", fixed
//     at that version, limited to the file's archs (kept as
//     database_specific.archs); the "0" key (never affected) is left out.
//
// A record converted from these formats is merged with the stored record of
// the same id: entries of other releases or branches are kept, so importing
// each release's file in turn accumulates.

type format int

const (
	formatOSV format = iota
	formatDebianTracker
	formatAlpineSecDB
)

var (
	debianTrackerHead = regexp.MustCompile(`^\s*\{\s*"[^"]+"\s*:\s*\{\s*"(CVE|TEMP|DSA|DLA)-`)
	alpineKeys        = regexp.MustCompile(`"(distroversion|secfixes)"\s*:`)
)

// sniff tells the format of a JSON document from its first bytes.
func sniff(head []byte) format {
	switch {
	case debianTrackerHead.Match(head):
		return formatDebianTracker
	case bytes.Contains(head, []byte(`"packages"`)) && len(alpineKeys.FindAll(head, 2)) > 0 && !bytes.Contains(head, []byte(`"schema_version"`)):
		return formatAlpineSecDB
	}
	return formatOSV
}

// debianReleases maps the tracker's release names to Debian versions.
var debianReleases = map[string]string{
	"buster": "10", "bullseye": "11", "bookworm": "12", "trixie": "13", "forky": "14", "duke": "15",
}

type debianRelease struct {
	Status       string `json:"status"`
	FixedVersion string `json:"fixed_version"`
	Urgency      string `json:"urgency"`
}

type debianIssue struct {
	Description string                   `json:"description"`
	Releases    map[string]debianRelease `json:"releases"`
}

// maxDebianPackage bounds one source package's entry in the tracker (the
// largest, the kernel, is a few megabytes).
const maxDebianPackage = 64 << 20

// convertDebianTracker streams the tracker's JSON object one source
// package at a time and calls add for every affected entry.
func convertDebianTracker(r io.Reader, modified time.Time, add func(*Advisory)) error {
	dec := json.NewDecoder(r)
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("Debian security tracker JSON: expected an object of source packages")
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return fmt.Errorf("Debian security tracker JSON: %w", err)
		}
		pkg, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("Debian security tracker JSON, package %q: %w", pkg, err)
		}
		if len(raw) > maxDebianPackage {
			return fmt.Errorf("Debian security tracker JSON, package %q: %d bytes exceed the limit", pkg, len(raw))
		}
		var issues map[string]debianIssue
		if err := json.Unmarshal(raw, &issues); err != nil {
			return fmt.Errorf("Debian security tracker JSON, package %q: %w", pkg, err)
		}
		ids := make([]string, 0, len(issues))
		for id := range issues {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			if !strings.HasPrefix(id, "CVE-") {
				continue // TEMP- ids have no upstream identity to match on
			}
			is := issues[id]
			rels := make([]string, 0, len(is.Releases))
			for rel := range is.Releases {
				rels = append(rels, rel)
			}
			sort.Strings(rels)
			for _, rel := range rels {
				ver, ok := debianReleases[rel]
				if !ok {
					continue
				}
				st := is.Releases[rel]
				ev := []Event{{Introduced: "0"}}
				switch {
				case st.Status == "resolved" && st.FixedVersion == "0":
					continue // never affected in this release
				case st.Status == "resolved" && st.FixedVersion != "":
					ev = append(ev, Event{Fixed: st.FixedVersion})
				case st.Status == "open":
				default:
					continue // undetermined
				}
				af := Affected{
					Package: Package{Ecosystem: "Debian:" + ver, Name: pkg},
					Ranges:  []Range{{Type: "ECOSYSTEM", Events: ev}},
				}
				if u := strings.TrimSpace(st.Urgency); u != "" {
					af.DatabaseSpecific, _ = json.Marshal(map[string]string{"urgency": u})
				}
				add(&Advisory{ID: "DEBIAN-" + id, Modified: modified, Upstream: []string{id},
					Summary: firstLine(is.Description), Affected: []Affected{af}})
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("Debian security tracker JSON: %w", err)
	}
	return nil
}

type alpineSecDB struct {
	DistroVersion string   `json:"distroversion"`
	Archs         []string `json:"archs"`
	Packages      []struct {
		Pkg struct {
			Name     string              `json:"name"`
			Secfixes map[string][]string `json:"secfixes"`
		} `json:"pkg"`
	} `json:"packages"`
}

var cveID = regexp.MustCompile(`^CVE-\d{4}-\d{4,}$`)

// convertAlpineSecDB reads one secdb file and calls add for every fix.
func convertAlpineSecDB(data []byte, modified time.Time, add func(*Advisory)) error {
	var db alpineSecDB
	if err := json.Unmarshal(data, &db); err != nil {
		return fmt.Errorf("Alpine secdb JSON: %w", err)
	}
	branch := db.DistroVersion
	if !strings.HasPrefix(branch, "v") || len(branch) > 16 {
		return fmt.Errorf("Alpine secdb JSON: distroversion %q is not a branch like v3.19", branch)
	}
	// The file's architectures limit every fix it lists (a branch's
	// repository built for fewer architectures than an image may run on).
	var archs json.RawMessage
	if len(db.Archs) > 0 {
		archs, _ = json.Marshal(map[string][]string{"archs": db.Archs})
	}
	for _, p := range db.Packages {
		name := p.Pkg.Name
		if name == "" {
			continue
		}
		vers := make([]string, 0, len(p.Pkg.Secfixes))
		for v := range p.Pkg.Secfixes {
			vers = append(vers, v)
		}
		sort.Strings(vers)
		for _, v := range vers {
			if v == "0" {
				continue // never affected
			}
			for _, entry := range p.Pkg.Secfixes[v] {
				// Entries are "CVE-2024-2511", sometimes followed by other ids.
				for _, id := range strings.Fields(entry) {
					if !cveID.MatchString(id) {
						continue
					}
					add(&Advisory{ID: "ALPINE-" + id, Modified: modified, Upstream: []string{id},
						Affected: []Affected{{
							Package:          Package{Ecosystem: "Alpine:" + branch, Name: name},
							Ranges:           []Range{{Type: "ECOSYSTEM", Events: []Event{{Introduced: "0"}, {Fixed: v}}}},
							DatabaseSpecific: archs,
						}}})
				}
			}
		}
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// mergeAffected adds b's affected entries to a, replacing a's entries for
// the same ecosystem and package.
func mergeAffected(a, b *Advisory) {
	key := func(af *Affected) string { return af.Package.Ecosystem + "\x00" + af.Package.Name }
	repl := map[string]bool{}
	for i := range b.Affected {
		repl[key(&b.Affected[i])] = true
	}
	var out []Affected
	for i := range a.Affected {
		if !repl[key(&a.Affected[i])] {
			out = append(out, a.Affected[i])
		}
	}
	a.Affected = append(out, b.Affected...)
	sort.SliceStable(a.Affected, func(i, j int) bool { return key(&a.Affected[i]) < key(&a.Affected[j]) })
	if a.Summary == "" {
		a.Summary = b.Summary
	}
	if b.Modified.After(a.Modified) {
		a.Modified = b.Modified
	}
}
