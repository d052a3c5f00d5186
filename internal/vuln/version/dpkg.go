package version

import "strings"

// CompareDpkg compares Debian versions "[epoch:]upstream[-revision]" like
// dpkg --compare-versions: the epoch first, then upstream and revision with
// dpkg's verrevcmp, where '~' sorts before everything, even the end.
func CompareDpkg(a, b string) int {
	return compareEVR(a, b, splitDpkg, verrevcmp)
}

func splitDpkg(v string) (epoch, upstream, revision string) {
	epoch, v = splitEpoch(strings.TrimSpace(v))
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		return epoch, v[:i], v[i+1:]
	}
	return epoch, v, ""
}

// dpkgOrder is dpkg's order() for the non-digit parts.
func dpkgOrder(c int) int {
	switch {
	case c == 0:
		return 0
	case c == '~':
		return -1
	case isDigit(byte(c)):
		return 0
	case isAlpha(byte(c)):
		return c
	default:
		return c + 256
	}
}

func verrevcmp(a, b string) int {
	for a != "" || b != "" {
		// Non-digit prefix.
		for (a != "" && !isDigit(a[0])) || (b != "" && !isDigit(b[0])) {
			ac, bc := 0, 0
			if a != "" {
				ac = dpkgOrder(int(a[0]))
			}
			if b != "" {
				bc = dpkgOrder(int(b[0]))
			}
			if ac != bc {
				return cmpInt(ac, bc)
			}
			if a != "" {
				a = a[1:]
			}
			if b != "" {
				b = b[1:]
			}
		}
		var da, db string
		da, a = leadingDigits(a)
		db, b = leadingDigits(b)
		if c := cmpDigits(da, db); c != 0 {
			return c
		}
	}
	return 0
}
