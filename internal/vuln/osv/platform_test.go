package osv

import (
	"encoding/json"
	"testing"
)

func TestAppliesToPlatform(t *testing.T) {
	amd64 := Platform{OS: "linux", Arch: "amd64"}
	arm64 := Platform{OS: "linux", Arch: "arm64", Variant: "v8"}
	armv6 := Platform{OS: "linux", Arch: "arm", Variant: "v6"}
	armv7 := Platform{OS: "linux", Arch: "arm", Variant: "v7"}
	arm := Platform{OS: "linux", Arch: "arm"}
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	cases := []struct {
		name    string
		af      Affected
		p       Platform
		pkgArch string
		want    bool
	}{
		{"no limit", Affected{Package: Package{Ecosystem: "Debian:12"}}, amd64, "", true},
		{"secdb archs, listed", Affected{Package: Package{Ecosystem: "Alpine:v3.19"}, DatabaseSpecific: raw(`{"archs":["x86","x86_64"]}`)}, amd64, "", true},
		{"secdb archs, not listed", Affected{Package: Package{Ecosystem: "Alpine:v3.19"}, DatabaseSpecific: raw(`{"archs":["x86","x86_64"]}`)}, arm64, "", false},
		{"ecosystem_specific arch string", Affected{Package: Package{Ecosystem: "Debian:12"}, EcosystemSpecific: raw(`{"arch":"arm64"}`)}, arm64, "", true},
		{"ecosystem_specific arch string, other", Affected{Package: Package{Ecosystem: "Debian:12"}, EcosystemSpecific: raw(`{"arch":"arm64"}`)}, amd64, "", false},
		{"purl arch", Affected{Package: Package{Ecosystem: "Red Hat:enterprise_linux:9", Purl: "pkg:rpm/redhat/openssl?arch=x86_64"}}, amd64, "", true},
		{"purl arch, other", Affected{Package: Package{Ecosystem: "Red Hat:enterprise_linux:9", Purl: "pkg:rpm/redhat/openssl?arch=x86_64"}}, arm64, "", false},
		{"purl noarch", Affected{Package: Package{Ecosystem: "Red Hat:enterprise_linux:9", Purl: "pkg:rpm/redhat/tzdata?arch=noarch"}}, arm64, "", true},
		{"package arch decides (i386 on amd64)", Affected{Package: Package{Ecosystem: "Debian:12"}, DatabaseSpecific: raw(`{"arch":["i386"]}`)}, amd64, "i386", true},
		{"package arch decides (amd64 record, i386 package)", Affected{Package: Package{Ecosystem: "Debian:12"}, DatabaseSpecific: raw(`{"arch":["amd64"]}`)}, amd64, "i386", false},
		{"arch all package: the image decides", Affected{Package: Package{Ecosystem: "Debian:12"}, DatabaseSpecific: raw(`{"arch":["arm64"]}`)}, amd64, "all", false},
		{"Alpine armhf is ARMv6", Affected{Package: Package{Ecosystem: "Alpine:v3.19"}, DatabaseSpecific: raw(`{"archs":["armhf"]}`)}, armv6, "", true},
		{"Alpine armhf is not ARMv7", Affected{Package: Package{Ecosystem: "Alpine:v3.19"}, DatabaseSpecific: raw(`{"archs":["armhf"]}`)}, armv7, "", false},
		{"Debian armhf is ARMv7", Affected{Package: Package{Ecosystem: "Debian:12"}, DatabaseSpecific: raw(`{"arch":"armhf"}`)}, armv7, "", true},
		{"arm without variant matches any arm", Affected{Package: Package{Ecosystem: "Debian:12"}, DatabaseSpecific: raw(`{"arch":"armel"}`)}, arm, "", true},
		{"unknown platform", Affected{Package: Package{Ecosystem: "Debian:12"}, DatabaseSpecific: raw(`{"arch":"s390x"}`)}, Platform{}, "", true},
		{"os limit", Affected{Package: Package{Ecosystem: "npm"}, EcosystemSpecific: raw(`{"os":["windows"]}`)}, amd64, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.af.AppliesToPlatform(c.p, c.pkgArch); got != c.want {
				t.Errorf("AppliesToPlatform(%s, %q) = %v, want %v", c.p, c.pkgArch, got, c.want)
			}
		})
	}
}
