package version

import "strings"

// CompareRPM compares "[epoch:]version[-release]" like rpm's rpmvercmp.
func CompareRPM(a, b string) int {
	return compareEVR(a, b, splitRPM, rpmvercmp)
}

func splitRPM(v string) (epoch, ver, rel string) {
	epoch, v = splitEpoch(v)
	ver, rel, _ = strings.Cut(v, "-")
	return epoch, ver, rel
}

func isAlnum(c byte) bool { return isDigit(c) || isAlpha(c) }

func rpmvercmp(a, b string) int {
	if a == b {
		return 0
	}
	for a != "" || b != "" {
		for a != "" && !isAlnum(a[0]) && a[0] != '~' && a[0] != '^' {
			a = a[1:]
		}
		for b != "" && !isAlnum(b[0]) && b[0] != '~' && b[0] != '^' {
			b = b[1:]
		}
		// Tilde sorts before everything, caret after the end but before anything else.
		if strings.HasPrefix(a, "~") || strings.HasPrefix(b, "~") {
			if !strings.HasPrefix(a, "~") {
				return 1
			}
			if !strings.HasPrefix(b, "~") {
				return -1
			}
			a, b = a[1:], b[1:]
			continue
		}
		if strings.HasPrefix(a, "^") || strings.HasPrefix(b, "^") {
			if a == "" {
				return -1
			}
			if b == "" {
				return 1
			}
			if !strings.HasPrefix(a, "^") {
				return 1
			}
			if !strings.HasPrefix(b, "^") {
				return -1
			}
			a, b = a[1:], b[1:]
			continue
		}
		if a == "" || b == "" {
			break
		}
		var sa, sb string
		numeric := isDigit(a[0])
		if numeric {
			sa, a = leadingDigits(a)
			sb, b = leadingDigits(b)
		} else {
			sa, a = leadingAlpha(a)
			sb, b = leadingAlpha(b)
		}
		if sb == "" { // segments of different types: numeric is newer
			if numeric {
				return 1
			}
			return -1
		}
		if numeric {
			if c := cmpDigits(sa, sb); c != 0 {
				return c
			}
		} else if c := strings.Compare(sa, sb); c != 0 {
			return c
		}
	}
	switch {
	case a == "" && b == "":
		return 0
	case a == "":
		return -1
	}
	return 1
}

func leadingAlpha(s string) (string, string) {
	i := 0
	for i < len(s) && isAlpha(s[i]) {
		i++
	}
	return s[:i], s[i:]
}
