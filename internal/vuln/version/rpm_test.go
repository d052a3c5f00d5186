package version

import (
	"strings"
	"testing"
)

// rpmvercmpCases are rpm's own test cases (tests/rpmvercmp.at in rpm's
// source tree): a, b and rpmvercmp(a, b). Each was checked against rpm
// 4.18's rpm.vercmp when this table was written.
const rpmvercmpCases = `
1.0 1.0 0
1.0 2.0 -1
2.0 1.0 1
2.0.1 2.0.1 0
2.0 2.0.1 -1
2.0.1 2.0 1
2.0.1a 2.0.1a 0
2.0.1a 2.0.1 1
2.0.1 2.0.1a -1
5.5p1 5.5p1 0
5.5p1 5.5p2 -1
5.5p2 5.5p1 1
5.5p10 5.5p10 0
5.5p1 5.5p10 -1
5.5p10 5.5p1 1
10xyz 10.1xyz -1
10.1xyz 10xyz 1
xyz10 xyz10 0
xyz10 xyz10.1 -1
xyz10.1 xyz10 1
xyz.4 xyz.4 0
xyz.4 8 -1
8 xyz.4 1
xyz.4 2 -1
2 xyz.4 1
5.5p2 5.6p1 -1
5.6p1 5.5p2 1
5.6p1 6.5p1 -1
6.5p1 5.6p1 1
6.0.rc1 6.0 1
6.0 6.0.rc1 -1
10b2 10a1 1
10a2 10b2 -1
1.0aa 1.0aa 0
1.0a 1.0aa -1
1.0aa 1.0a 1
10.0001 10.0001 0
10.0001 10.1 0
10.1 10.0001 0
10.0001 10.0039 -1
10.0039 10.0001 1
4.999.9 5.0 -1
5.0 4.999.9 1
20101121 20101121 0
20101121 20101122 -1
20101122 20101121 1
2_0 2_0 0
2.0 2_0 0
2_0 2.0 0
a a 0
a+ a+ 0
a+ a_ 0
a_ a+ 0
+a +a 0
+a _a 0
_a +a 0
+_ +_ 0
_+ +_ 0
_+ _ 0
+ _ 0
1.0~rc1 1.0~rc1 0
1.0~rc1 1.0 -1
1.0 1.0~rc1 1
1.0~rc1 1.0~rc2 -1
1.0~rc2 1.0~rc1 1
1.0~rc1~git123 1.0~rc1~git123 0
1.0~rc1~git123 1.0~rc1 -1
1.0~rc1 1.0~rc1~git123 1
1.0^ 1.0^ 0
1.0^ 1.0 1
1.0 1.0^ -1
1.0^git1 1.0^git1 0
1.0^git1 1.0 1
1.0 1.0^git1 -1
1.0^git1 1.0^git2 -1
1.0^git2 1.0^git1 1
1.0^git1 1.01 -1
1.01 1.0^git1 1
1.0^20160101 1.0^20160101 0
1.0^20160101 1.0.1 -1
1.0.1 1.0^20160101 1
1.0^20160101^git1 1.0^20160101^git1 0
1.0^20160102 1.0^20160101^git1 1
1.0^20160101^git1 1.0^20160102 -1
1.0~rc1^git1 1.0~rc1^git1 0
1.0~rc1^git1 1.0~rc1 1
1.0~rc1 1.0~rc1^git1 -1
1.0^git1~pre 1.0^git1~pre 0
1.0^git1 1.0^git1~pre 1
1.0^git1~pre 1.0^git1 -1
1.1.α 1.1.α 0
1.1.α 1.1.β 0
1.1.β 1.1.α 0
1.1.αα 1.1.α 0
1.1.α 1.1.ββ 0
1.1.ββ 1.1.αα 0
`

func TestRPMVercmpUpstreamCases(t *testing.T) {
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(rpmvercmpCases), "\n") {
		f := strings.Fields(line)
		want := map[string]int{"-1": -1, "0": 0, "1": 1}[f[2]]
		if got := rpmvercmp(f[0], f[1]); got != want {
			t.Errorf("rpmvercmp(%q, %q) = %d, want %d", f[0], f[1], got, want)
		}
		// No case has an epoch or a release, so the EVR comparison agrees.
		if got := Compare(RPM, f[0], f[1]); got != want {
			t.Errorf("Compare(RPM, %q, %q) = %d, want %d", f[0], f[1], got, want)
		}
		n++
	}
	if n < 90 {
		t.Fatalf("only %d cases", n)
	}
}

// TestRPMEVR covers epoch and release handling as in rpm's rpmVersionCompare:
// a missing epoch is 0, the epoch dominates, then version, then release.
func TestRPMEVR(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"1:3.0.7-24.el9", "1:3.0.7-27.el9", -1},
		{"1:3.0.7-24.el9", "3.0.9-1.el9", 1},
		{"0:1.0-1", "1.0-1", 0},
		{"1.0-1.el9_2", "1.0-1.el9", 1},
		{"2.34-100.el9_4.2", "2.34-100.el9_4.12", -1},
		{"5.1.8-9.el9", "5.1.8-10.el9", -1},
		{"1.0~beta-1", "1.0-1", -1},
		{"1.0-1~rc", "1.0-1", -1},
		{"10:1-1", "9:2-2", 1},
	} {
		if got := Compare(RPM, c.a, c.b); got != c.want {
			t.Errorf("Compare(RPM, %q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := Compare(RPM, c.b, c.a); got != -c.want {
			t.Errorf("Compare(RPM, %q, %q) = %d, want %d", c.b, c.a, got, -c.want)
		}
	}
}
