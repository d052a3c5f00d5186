package version

import "strings"

// apkSuffixes in apk-tools order; those before "" are pre-releases.
var apkSuffixes = map[string]int{
	"alpha": -4, "beta": -3, "pre": -2, "rc": -1,
	"cvs": 1, "svn": 2, "git": 3, "hg": 4, "p": 5,
}

type apkVersion struct {
	nums     []string // dot-separated numeric components
	letter   byte
	suffixes []apkSuffix
	rev      string
	rest     string // anything unparseable, compared as a string
}

type apkSuffix struct {
	rank int
	num  string
}

func parseAPK(v string) apkVersion {
	var out apkVersion
	v = strings.TrimSpace(v)
	if i := strings.LastIndex(v, "-r"); i >= 0 {
		if d, rest := leadingDigits(v[i+2:]); rest == "" && d != "" {
			out.rev = d
			v = v[:i]
		}
	}
	out.nums, v = leadingDotted(v)
	if v != "" && v[0] >= 'a' && v[0] <= 'z' && (len(v) == 1 || v[1] == '_') {
		out.letter = v[0]
		v = v[1:]
	}
	for strings.HasPrefix(v, "_") {
		v = v[1:]
		name, rest := leadingAlpha(v)
		rank, ok := apkSuffixes[name]
		if !ok {
			v = "_" + v
			break
		}
		var num string
		num, v = leadingDigits(rest)
		out.suffixes = append(out.suffixes, apkSuffix{rank, num})
	}
	out.rest = v
	return out
}

// CompareAPK compares Alpine package versions like apk-tools:
// numbers, an optional letter, suffixes (_alpha.._rc before the release,
// _cvs.._p after it) and the -rN package revision.
func CompareAPK(a, b string) int {
	va, vb := parseAPK(a), parseAPK(b)
	for i := 0; i < len(va.nums) && i < len(vb.nums); i++ {
		x, y := va.nums[i], vb.nums[i]
		var c int
		if i > 0 && (strings.HasPrefix(x, "0") || strings.HasPrefix(y, "0")) {
			// apk compares components with a leading zero as fractions.
			c = strings.Compare(strings.TrimRight(x, "0"), strings.TrimRight(y, "0"))
		} else {
			c = cmpDigits(x, y)
		}
		if c != 0 {
			return c
		}
	}
	if c := cmpInt(len(va.nums), len(vb.nums)); c != 0 {
		return c
	}
	if c := cmpInt(int(va.letter), int(vb.letter)); c != 0 {
		return c
	}
	for i := 0; i < len(va.suffixes) || i < len(vb.suffixes); i++ {
		var sa, sb apkSuffix
		if i < len(va.suffixes) {
			sa = va.suffixes[i]
		}
		if i < len(vb.suffixes) {
			sb = vb.suffixes[i]
		}
		if c := cmpInt(sa.rank, sb.rank); c != 0 {
			return c
		}
		if c := cmpDigits(sa.num, sb.num); c != 0 {
			return c
		}
	}
	if c := strings.Compare(va.rest, vb.rest); c != 0 {
		return c
	}
	return cmpDigits(va.rev, vb.rev)
}
