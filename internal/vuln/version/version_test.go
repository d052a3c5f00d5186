package version

import "testing"

func TestCompare(t *testing.T) {
	cases := []struct {
		s    Scheme
		a, b string
		want int
	}{
		// dpkg, cases from dpkg's own test suite and Debian advisories.
		{Dpkg, "1.0", "1.0", 0},
		{Dpkg, "1:1.0", "2.0", 1},
		{Dpkg, "0:2.0", "2.0", 0},
		{Dpkg, "1.0~rc1", "1.0", -1},
		{Dpkg, "1.0~rc1-1", "1.0~rc1~1", 1},
		{Dpkg, "2.36-9+deb12u4", "2.36-9+deb12u7", -1},
		{Dpkg, "2.36-9+deb12u10", "2.36-9+deb12u9", 1},
		{Dpkg, "1.2.13.dfsg-1", "1:1.2.13.dfsg-1", -1},
		{Dpkg, "7.88.1-10+deb12u5", "7.88.1-10+deb12u12", -1},
		{Dpkg, "1.0a", "1.0+", -1},
		{Dpkg, "3.0.11-1~deb12u2", "3.0.11-1", -1},
		{Dpkg, "1.0-1", "1.0.0-1", -1},
		// apk
		{APK, "1.2.3-r0", "1.2.3-r1", -1},
		{APK, "1.2.3", "1.2.3_rc1", 1},
		{APK, "1.2.3_p1", "1.2.3", 1},
		{APK, "1.2.3a", "1.2.3", 1},
		{APK, "1.2.10", "1.2.9", 1},
		{APK, "3.1.4-r5", "3.1.4-r5", 0},
		{APK, "1.36.1-r7", "1.36.1-r15", -1},
		{APK, "2.0_alpha1", "2.0_beta1", -1},
		// rpm
		{RPM, "1.0-1.el9", "1.0-2.el9", -1},
		{RPM, "1:1.0", "2.0", 1},
		{RPM, "1.0~rc1", "1.0", -1},
		{RPM, "1.0^git1", "1.0", 1},
		{RPM, "1.0a", "1.0.1", -1},
		// semver
		{Semver, "0.7.0", "0.7.0", 0},
		{Semver, "v0.3.7", "0.3.8", -1},
		{Semver, "1.0.0-rc.1", "1.0.0", -1},
		{Semver, "1.0.0-alpha", "1.0.0-alpha.1", -1},
		{Semver, "1.0.0-2", "1.0.0-beta", -1},
		{Semver, "0.0.0-20220722155237-a158d28d115b", "0.1.0", -1},
		{Semver, "go1.21.3", "1.21.10", -1},
		{Semver, "1.22.0-rc1", "1.22.0", -1},
		// pep440
		{PEP440, "1.0.dev1", "1.0a1", -1},
		{PEP440, "1.0a1", "1.0b2", -1},
		{PEP440, "1.0rc1", "1.0", -1},
		{PEP440, "1.0", "1.0.post1", -1},
		{PEP440, "1.0", "1.0.0", 0},
		{PEP440, "1!0.1", "2.0", 1},
		{PEP440, "2.31.0", "2.32.0", -1},
		{PEP440, "1.0-1", "1.0", 1},
	}
	for _, c := range cases {
		if got := Compare(c.s, c.a, c.b); got != c.want {
			t.Errorf("%s: Compare(%q, %q) = %d, want %d", c.s, c.a, c.b, got, c.want)
		}
		if got := Compare(c.s, c.b, c.a); got != -c.want {
			t.Errorf("%s: Compare(%q, %q) = %d, want %d", c.s, c.b, c.a, got, -c.want)
		}
	}
}

func TestForEcosystem(t *testing.T) {
	for eco, want := range map[string]Scheme{"Debian:12": Dpkg, "Alpine:v3.19": APK, "Go": Semver, "PyPI": PEP440, "npm": Semver, "Red Hat:enterprise_linux:9": RPM} {
		if got := ForEcosystem(eco); got != want {
			t.Errorf("ForEcosystem(%q) = %s, want %s", eco, got, want)
		}
	}
}

// FuzzCompare checks that every comparator terminates without panicking and
// is antisymmetric on arbitrary input.
func FuzzCompare(f *testing.F) {
	for _, s := range []string{"1:1.0~rc1-1", "1.2.3_rc1-r0", "v1.0.0-alpha.1+b", "1!2.0.post1.dev3+x", "1.0^git~1", "", "~", "-r", "_", "00.01"} {
		f.Add(s, "1.0")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, s := range []Scheme{Dpkg, APK, RPM, Semver, PEP440} {
			x, y := Compare(s, a, b), Compare(s, b, a)
			if x != -y {
				t.Fatalf("%s: Compare(%q,%q)=%d but Compare(%q,%q)=%d", s, a, b, x, b, a, y)
			}
			if Compare(s, a, a) != 0 {
				t.Fatalf("%s: Compare(%q,%q) != 0", s, a, a)
			}
		}
	})
}
