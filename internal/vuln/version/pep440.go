package version

import (
	"strings"
)

type pep440 struct {
	epoch   string
	release []string
	pre     int // 0 none, 1 a, 2 b, 3 rc
	preN    string
	post    bool
	postN   string
	dev     bool
	devN    string
	local   string
}

// parsePEP440 reads the normalised forms of PEP 440 leniently
// ("1.0rc1", "1.0-rc.1", "1.0.post1", "1.0-1", "1!2.0.dev3+local").
func parsePEP440(v string) pep440 {
	var p pep440
	v = strings.ToLower(strings.TrimSpace(v))
	v = strings.TrimPrefix(v, "v")
	v, p.local, _ = strings.Cut(v, "+")
	p.epoch = "0"
	if e, rest, ok := strings.Cut(v, "!"); ok {
		p.epoch = e
		v = rest
	}
	p.release, v = leadingDotted(v)
	for len(v) > 0 && v != "" {
		v = strings.TrimLeft(v, ".-_")
		name, rest := leadingAlpha(v)
		rest = strings.TrimLeft(rest, ".-_")
		num, after := leadingDigits(rest)
		switch name {
		case "a", "alpha":
			p.pre, p.preN = 1, num
		case "b", "beta":
			p.pre, p.preN = 2, num
		case "rc", "c", "pre", "preview":
			p.pre, p.preN = 3, num
		case "post", "rev", "r":
			p.post, p.postN = true, num
		case "dev":
			p.dev, p.devN = true, num
		case "":
			if num == "" {
				return p
			}
			p.post, p.postN = true, num // "1.0-1" is a post-release
		default:
			return p
		}
		v = after
	}
	return p
}

// ComparePEP440 compares Python package versions per PEP 440:
// 1.0.dev1 < 1.0a1 < 1.0b2 < 1.0rc1 < 1.0 < 1.0.post1, trailing zeros ignored.
func ComparePEP440(a, b string) int {
	pa, pb := parsePEP440(a), parsePEP440(b)
	if c := cmpDigits(pa.epoch, pb.epoch); c != 0 {
		return c
	}
	n := max(len(pa.release), len(pb.release))
	for i := 0; i < n; i++ {
		x, y := "0", "0"
		if i < len(pa.release) {
			x = pa.release[i]
		}
		if i < len(pb.release) {
			y = pb.release[i]
		}
		if c := cmpDigits(x, y); c != 0 {
			return c
		}
	}
	if c := cmpInt(pa.preKey(), pb.preKey()); c != 0 {
		return c
	}
	if pa.pre != 0 && pa.pre == pb.pre {
		if c := cmpDigits(pa.preN, pb.preN); c != 0 {
			return c
		}
	}
	if c := cmpBoolNum(pa.post, pa.postN, pb.post, pb.postN, false); c != 0 {
		return c
	}
	if c := cmpBoolNum(pa.dev, pa.devN, pb.dev, pb.devN, true); c != 0 {
		return c
	}
	return strings.Compare(pa.local, pb.local)
}

// preKey orders the pre-release phase: a dev-only release sorts before any
// pre-release of the same version, a final release after all of them.
func (p pep440) preKey() int {
	switch {
	case p.pre != 0:
		return p.pre
	case p.dev && !p.post:
		return -1
	}
	return 4
}

// cmpBoolNum compares optional numbered segments; absentHigh says whether an
// absent segment sorts after present ones (true for .devN).
func cmpBoolNum(ha bool, na string, hb bool, nb string, absentHigh bool) int {
	switch {
	case ha && hb:
		return cmpDigits(na, nb)
	case ha == hb:
		return 0
	case ha != absentHigh:
		return 1
	}
	return -1
}
