package osv

import (
	"encoding/json"
	"net/url"
	"strings"
)

// Platform is the platform a package is installed for, in OCI image
// config terms (GOOS/GOARCH names): OS "linux", Arch "amd64", "arm64",
// "arm", "386", …, Variant "v7" for arm. The zero value is unknown and
// matches every record.
type Platform struct {
	OS      string `json:"os,omitempty"`
	Arch    string `json:"arch,omitempty"`
	Variant string `json:"variant,omitempty"`
}

func (p Platform) String() string {
	s := p.OS + "/" + p.Arch
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Arches returns the architectures an affected entry is limited to, in
// the record's own names, and the operating systems, from the places
// distribution data puts them: "arch", "archs", "architectures" (a string
// or a list) in ecosystem_specific or database_specific — Alpine secdb's
// top-level archs are kept there by the importer — and the arch qualifier
// of the package's purl (pkg:rpm/…?arch=x86_64). Empty: no limit.
func (af *Affected) Arches() (arches, oses []string) {
	for _, raw := range []json.RawMessage{af.EcosystemSpecific, af.DatabaseSpecific} {
		if len(raw) == 0 {
			continue
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			continue
		}
		for _, k := range []string{"arch", "archs", "architectures"} {
			arches = append(arches, stringOrList(m[k])...)
		}
		oses = append(oses, stringOrList(m["os"])...)
	}
	if _, q, ok := strings.Cut(af.Package.Purl, "?"); ok {
		if v, err := url.ParseQuery(q); err == nil {
			arches = append(arches, v["arch"]...)
		}
	}
	return arches, oses
}

func stringOrList(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "" {
			return nil
		}
		return []string{s}
	}
	var l []string
	if json.Unmarshal(raw, &l) == nil {
		return l
	}
	return nil
}

// AppliesToPlatform reports whether an affected entry of ecosystem eco
// applies to a package installed for p. pkgArch is the package's own
// architecture as its database records it (dpkg's Architecture, apk's A:,
// rpm's arch), which decides when it names one (an i386 package on an
// amd64 image); otherwise — "all", "noarch", or none — the image's
// platform does. An entry without architectures, an unknown platform, and
// architecture-independent entries ("all", "noarch", "src") apply.
func (af *Affected) AppliesToPlatform(p Platform, pkgArch string) bool {
	arches, oses := af.Arches()
	if len(oses) > 0 && p.OS != "" {
		ok := false
		for _, o := range oses {
			ok = ok || strings.EqualFold(o, p.OS)
		}
		if !ok {
			return false
		}
	}
	if len(arches) == 0 {
		return true
	}
	eco := af.Package.Ecosystem
	want := p
	if a, v, every := CanonicalArch(eco, pkgArch); pkgArch != "" && !every {
		want = Platform{OS: p.OS, Arch: a, Variant: v}
	}
	if want.Arch == "" {
		return true
	}
	if want.Arch == "arm64" && want.Variant == "v8" {
		want.Variant = "" // arm64's only variant in practice
	}
	for _, rec := range arches {
		a, v, every := CanonicalArch(eco, rec)
		if every {
			return true
		}
		if a == want.Arch && (v == "" || want.Variant == "" || v == want.Variant) {
			return true
		}
	}
	return false
}

// CanonicalArch maps an architecture name as a distribution writes it to
// the OCI (GOARCH) name and variant; every is set for the names that mean
// "every architecture" (all, any, noarch, src). Where distributions use one
// name for different things the ecosystem decides: Alpine's armhf is ARMv6,
// Debian's and Ubuntu's ARMv7. Unknown names are returned lower-cased.
func CanonicalArch(ecosystem, name string) (arch, variant string, every bool) {
	n := strings.ToLower(strings.TrimSpace(name))
	switch n {
	case "", "all", "any", "noarch", "src", "source", "nosrc":
		return "", "", true
	case "x86_64", "amd64", "x86-64", "x64":
		return "amd64", "", false
	case "aarch64", "arm64":
		return "arm64", "", false
	case "i386", "i486", "i586", "i686", "x86", "386", "ia32":
		return "386", "", false
	case "armhf":
		if strings.HasPrefix(ecosystem, "Alpine") {
			return "arm", "v6", false
		}
		return "arm", "v7", false
	case "armv7", "armv7l", "armv7hl", "armv7h", "armhfp":
		return "arm", "v7", false
	case "armv6", "armv6l", "armv6hl":
		return "arm", "v6", false
	case "armel", "armv5", "armv5tel", "armv5te":
		return "arm", "v5", false
	case "ppc64le", "ppc64el":
		return "ppc64le", "", false
	case "mips64el", "mips64le":
		return "mips64le", "", false
	case "loongarch64", "loong64":
		return "loong64", "", false
	}
	return n, "", false
}
