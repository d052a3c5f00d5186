// Package version compares package versions the way each ecosystem's own
// package manager does: dpkg for Debian and Ubuntu, apk-tools for Alpine,
// rpmvercmp for RPM distributions, semantic versioning for Go and npm, and
// PEP 440 for Python. OSV ranges are only meaningful with the right
// comparator: "1:1.0" > "2.0" for dpkg, "1.0~rc1" < "1.0", "1.0a1" < "1.0" for
// PEP 440.
package version

import (
	"strings"
)

// Scheme names a version ordering.
type Scheme string

const (
	Dpkg   Scheme = "dpkg"
	APK    Scheme = "apk"
	RPM    Scheme = "rpm"
	Semver Scheme = "semver"
	PEP440 Scheme = "pep440"
)

// Compare returns -1, 0 or +1 as a is older than, equal to or newer than b
// under scheme s. Unparseable versions never panic; they are ordered by a
// best-effort fallback so that a bad advisory cannot stop a scan.
func Compare(s Scheme, a, b string) int {
	switch s {
	case Dpkg:
		return CompareDpkg(a, b)
	case APK:
		return CompareAPK(a, b)
	case RPM:
		return CompareRPM(a, b)
	case PEP440:
		return ComparePEP440(a, b)
	default:
		return CompareSemver(a, b)
	}
}

// ForEcosystem returns the scheme of an OSV ecosystem name such as
// "Debian:12", "Alpine:v3.19", "Go", "PyPI" or "npm".
func ForEcosystem(ecosystem string) Scheme {
	base, _, _ := strings.Cut(ecosystem, ":")
	switch strings.ToLower(base) {
	case "debian", "ubuntu":
		return Dpkg
	case "alpine", "wolfi", "chainguard":
		return APK
	case "red hat", "almalinux", "rocky linux", "opensuse", "suse", "mageia", "openeuler":
		return RPM
	case "pypi":
		return PEP440
	default: // Go, npm, crates.io, ...
		return Semver
	}
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cmpDigits compares two strings of ASCII digits numerically without
// overflowing, however long they are.
func cmpDigits(a, b string) int {
	a = strings.TrimLeft(a, "0")
	b = strings.TrimLeft(b, "0")
	if c := cmpInt(len(a), len(b)); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isAlpha(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

// leadingDigits splits s into its leading run of digits and the rest.
func leadingDigits(s string) (string, string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

// splitEpoch splits "[epoch:]rest" as dpkg and rpm do; a missing or
// non-numeric epoch is "0".
func splitEpoch(v string) (epoch, rest string) {
	if i := strings.IndexByte(v, ':'); i >= 0 {
		if e, r := leadingDigits(v[:i]); r == "" && e != "" {
			return e, v[i+1:]
		}
		return "0", v[i+1:]
	}
	return "0", v
}

// leadingDotted splits off a leading run of dot-separated numbers ("1.2.3").
func leadingDotted(v string) (nums []string, rest string) {
	for {
		d, r := leadingDigits(v)
		if d == "" {
			return nums, v
		}
		nums = append(nums, d)
		v = r
		if len(v) < 2 || v[0] != '.' || !isDigit(v[1]) {
			return nums, v
		}
		v = v[1:]
	}
}

// compareEVR compares epoch:version-release triples as dpkg and rpm do,
// each with its own split and segment comparison.
func compareEVR(a, b string, split func(string) (string, string, string), cmp func(a, b string) int) int {
	ea, va, ra := split(a)
	eb, vb, rb := split(b)
	if c := cmpDigits(ea, eb); c != 0 {
		return c
	}
	if c := cmp(va, vb); c != 0 {
		return c
	}
	return cmp(ra, rb)
}
