package version

import "strings"

// CompareSemver compares semantic versions (Go modules, npm, crates). It is
// lenient: a leading "v" or "go" is dropped, missing minor/patch count as 0,
// build metadata is ignored, and Go's "go1.22rc1" reads as 1.22.0-rc1.
func CompareSemver(a, b string) int {
	ra, pa := splitSemver(a)
	rb, pb := splitSemver(b)
	for i := 0; i < 3; i++ {
		if c := cmpDigits(ra[i], rb[i]); c != 0 {
			return c
		}
	}
	// A release is newer than any of its pre-releases.
	switch {
	case pa == "" && pb == "":
		return 0
	case pa == "":
		return 1
	case pb == "":
		return -1
	}
	ia, ib := strings.Split(pa, "."), strings.Split(pb, ".")
	for i := 0; i < len(ia) && i < len(ib); i++ {
		x, y := ia[i], ib[i]
		dx, rx := leadingDigits(x)
		dy, ry := leadingDigits(y)
		nx, ny := dx != "" && rx == "", dy != "" && ry == ""
		var c int
		switch {
		case nx && ny:
			c = cmpDigits(x, y)
		case nx:
			c = -1
		case ny:
			c = 1
		default:
			c = strings.Compare(x, y)
		}
		if c != 0 {
			return c
		}
	}
	return cmpInt(len(ia), len(ib))
}

func splitSemver(v string) (rel [3]string, pre string) {
	v = strings.TrimSpace(v)
	v = strings.TrimPrefix(v, "v")
	v = strings.TrimPrefix(v, "go")
	v, _, _ = strings.Cut(v, "+")
	for i := 0; i < 3; i++ {
		d, rest := leadingDigits(v)
		rel[i] = d
		v = rest
		if !strings.HasPrefix(v, ".") {
			break
		}
		v = v[1:]
	}
	v = strings.TrimPrefix(v, "-")
	return rel, v
}
