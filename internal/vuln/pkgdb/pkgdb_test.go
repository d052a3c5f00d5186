package pkgdb

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/palisade-dev/palisade/internal/vuln/image"
)

func fsOf(files map[string]string, links map[string]string) *image.FS {
	l := &image.Layer{}
	for p, d := range files {
		l.Entries = append(l.Entries, image.Entry{Path: p, Type: image.TypeFile, Data: []byte(d), Size: int64(len(d))})
	}
	for p, target := range links {
		l.Entries = append(l.Entries, image.Entry{Path: p, Type: image.TypeSymlink, Link: target})
	}
	return image.Flatten([]*image.Layer{l})
}

func TestBookwormStatus(t *testing.T) {
	status, _ := os.ReadFile("testdata/bookworm/status")
	rel, _ := os.ReadFile("testdata/bookworm/os-release")
	inv, err := Collect(fsOf(map[string]string{"var/lib/dpkg/status": string(status), "usr/lib/os-release": string(rel)},
		map[string]string{"etc/os-release": "../usr/lib/os-release"}))
	if err != nil {
		t.Fatal(err)
	}
	if inv.Distro.Ecosystem() != "Debian:12" || len(inv.Packages) != 88 {
		t.Fatalf("distro %+v, %d packages", inv.Distro, len(inv.Packages))
	}
	for _, p := range inv.Packages {
		if p.Name == "libc6" && (p.SourceName != "glibc" || p.MatchName() != "glibc" || p.Ecosystem != "Debian:12" ||
			!strings.HasPrefix(p.PURL, "pkg:deb/debian/libc6@2.36") || !strings.Contains(p.PURL, "upstream=glibc")) {
			t.Errorf("libc6 = %+v", p)
		}
	}
}

func TestDpkgStatusDAndBinNMU(t *testing.T) {
	// distroless keeps one stanza per file in status.d; a binNMU has its
	// source version in parentheses.
	inv, err := Collect(fsOf(map[string]string{
		"etc/os-release":                        "ID=debian\nVERSION_ID=\"12\"\n",
		"var/lib/dpkg/status.d/libssl3":         "Package: libssl3\nVersion: 3.0.15-1~deb12u1+b1\nSource: openssl (3.0.15-1~deb12u1)\nArchitecture: amd64\n",
		"var/lib/dpkg/status.d/base-files":      "Package: base-files\nVersion: 12.4+deb12u8\n",
		"var/lib/dpkg/status.d/libssl3.md5sums": "x",
	}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Packages) != 2 {
		t.Fatalf("packages = %+v", inv.Packages)
	}
	ssl := inv.Packages[1]
	if ssl.Name != "libssl3" || ssl.MatchName() != "openssl" || ssl.MatchVersion() != "3.0.15-1~deb12u1" {
		t.Errorf("libssl3 = %+v", ssl)
	}
}

func TestCorruptDatabases(t *testing.T) {
	for _, c := range []struct{ path, data, want string }{
		{"var/lib/dpkg/status", "Package: a\nVersion: 1\n\nthis is not a field\n", "var/lib/dpkg/status: line 4: expected \"Field: value\""},
		{"var/lib/dpkg/status", " continuation first\n", "var/lib/dpkg/status: line 1: continuation line outside a field"},
		{"var/lib/dpkg/status", "Version: 1\nStatus: install ok installed\n", "var/lib/dpkg/status: line 1: stanza without a Package field"},
		{"var/lib/dpkg/status", "Package: a\n\x00\x01\x02", "var/lib/dpkg/status: line 2: NUL byte"},
		{"lib/apk/db/installed", "P:musl\nV:1\n\ngarbage\n", "lib/apk/db/installed: line 4: expected \"K:value\""},
		{"lib/apk/db/installed", "P:musl\nA:x86_64\n\n", "lib/apk/db/installed: line 1: package stanza without P: or V:"},
	} {
		_, err := Collect(fsOf(map[string]string{c.path: c.data}, nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.data, err, c.want)
		}
	}
}

func TestDanglingDatabaseSymlinkWarns(t *testing.T) {
	inv, err := Collect(fsOf(nil, map[string]string{"var/lib/dpkg/status": "/home/someone/status"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Warnings) != 1 || !strings.Contains(inv.Warnings[0], "does not resolve to a file inside the image root") {
		t.Errorf("warnings = %q", inv.Warnings)
	}
}

func TestLanguagePackages(t *testing.T) {
	inv, err := Collect(fsOf(map[string]string{
		"app/node_modules/@scope/pkg/package.json": `{"name":"@scope/pkg","version":"1.2.3"}`,
		"app/node_modules/lodash/package.json":     `{"name":"lodash","version":"4.17.20"}`,
		"app/package-lock.json": `{"lockfileVersion":3,"packages":{"":{"name":"app"},"node_modules/lodash":{"version":"4.17.20"},
			"node_modules/minimist":{"version":"1.2.5"},"node_modules/local":{"version":"file:../local"}}}`,
		"usr/lib/python3/site-packages/requests-2.31.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n\nName: not-this\n",
		"usr/lib/python3/site-packages/six.egg-info/PKG-INFO":              "Name: six\nVersion: 1.16.0\n",
	}, nil))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range inv.Packages {
		got = append(got, p.Type+":"+p.Name+"@"+p.Version+" "+p.PURL)
	}
	want := []string{
		"npm:@scope/pkg@1.2.3 pkg:npm/%40scope/pkg@1.2.3",
		"npm:lodash@4.17.20 pkg:npm/lodash@4.17.20",
		"npm:minimist@1.2.5 pkg:npm/minimist@1.2.5",
		"pypi:requests@2.31.0 pkg:pypi/requests@2.31.0",
		"pypi:six@1.16.0 pkg:pypi/six@1.16.0",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("packages:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDistroEcosystems(t *testing.T) {
	for _, c := range []struct{ id, ver, want string }{
		{"debian", "12", "Debian:12"}, {"alpine", "3.19.1", "Alpine:v3.19"}, {"ubuntu", "22.04", "Ubuntu:22.04"}, {"fedora", "40", ""},
	} {
		if got := (&Distro{ID: c.id, VersionID: c.ver}).Ecosystem(); got != c.want {
			t.Errorf("%s %s: %q, want %q", c.id, c.ver, got, c.want)
		}
	}
}

func FuzzParseDpkgStatus(f *testing.F) {
	status, _ := os.ReadFile("testdata/bookworm/status")
	f.Add(status[:4000])
	f.Add([]byte("Package: a\nStatus: install ok installed\nVersion: 1:2~3\nSource: b (4)\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pkgs, err := ParseDpkgStatus(data, "status")
		if err == nil {
			for _, p := range pkgs {
				if p.Name == "" || p.Version == "" {
					t.Fatalf("package without name or version: %+v", p)
				}
			}
		}
	})
}

func FuzzParseAPKInstalled(f *testing.F) {
	db, _ := os.ReadFile("testdata/alpine/installed")
	f.Add(db[:2000])
	f.Fuzz(func(t *testing.T, data []byte) {
		pkgs, err := ParseAPKInstalled(data, "installed")
		if err == nil {
			for _, p := range pkgs {
				if p.Name == "" || p.Version == "" {
					t.Fatalf("package without name or version: %+v", p)
				}
			}
		}
	})
}

func FuzzParseOSRelease(f *testing.F) {
	rel, _ := os.ReadFile("testdata/alpine/os-release")
	f.Add(rel)
	f.Fuzz(func(t *testing.T, data []byte) { ParseOSRelease(data) })
}

func FuzzParseNPM(f *testing.F) {
	f.Add([]byte(`{"lockfileVersion":1,"dependencies":{"a":{"version":"1.0.0","dependencies":{"b":{"version":"2.0.0"}}}}}`))
	f.Add([]byte(`{"name":"x","version":"1"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ParsePackageLock(data, "package-lock.json")
		ParsePackageJSON(data, "package.json")
	})
}

func FuzzParsePythonMetadata(f *testing.F) {
	f.Add([]byte("Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n\nbody"))
	f.Fuzz(func(t *testing.T, data []byte) { ParsePythonMetadata(data, "METADATA") })
}

// FuzzProbe: arbitrary executables never panic the Go build info reader.
func FuzzProbe(f *testing.F) {
	self, err := os.ReadFile("/proc/self/exe")
	if err == nil && len(self) > 1<<20 {
		f.Add(self[:1<<20])
	}
	f.Add([]byte("\x7fELF\x02\x01\x01\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		Probe("bin", bytes.NewReader(data), int64(len(data)))
	})
}
