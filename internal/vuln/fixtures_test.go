package vuln

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
)

// testImages are the acceptance images, built once per test binary.
type testImages struct {
	debian    v1.Image // (a) a Debian root filesystem layer with the committed real bookworm dpkg status
	alpine    v1.Image // (b) an Alpine-style apk database
	gobin     v1.Image // (c) a static Go binary (x/text v0.3.7, x/net v0.7.0)
	whiteout  v1.Image // (d) later layers delete a Go binary, an apk package's files and a node_modules tree
	goBinary  []byte
	bookworm  string // the committed dpkg status
	apkDB     string
	alpineRel string
}

var (
	imagesOnce sync.Once
	images     *testImages
)

func readTestdata(t testing.TB, p string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("pkgdb", "testdata", p))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func buildImages(t testing.TB) *testImages {
	imagesOnce.Do(func() {
		ti := &testImages{
			bookworm:  readTestdata(t, "bookworm/status"),
			apkDB:     readTestdata(t, "alpine/installed"),
			alpineRel: readTestdata(t, "alpine/os-release"),
		}
		ti.goBinary = vulntest.GoBinary(t)
		debRel := readTestdata(t, "bookworm/os-release")
		ti.debian = vulntest.Image(t, vulntest.Layer(t,
			vulntest.File{Path: "etc/", Dir: true},
			vulntest.File{Path: "usr/lib/os-release", Data: debRel},
			vulntest.File{Path: "etc/os-release", Link: "../usr/lib/os-release"},
			vulntest.File{Path: "var/lib/dpkg/status", Data: ti.bookworm},
			vulntest.File{Path: "bin", Link: "usr/bin"},
		))
		ti.alpine = vulntest.Image(t, vulntest.Layer(t,
			vulntest.File{Path: "etc/os-release", Data: ti.alpineRel},
			vulntest.File{Path: "lib/apk/db/installed", Data: ti.apkDB},
			vulntest.File{Path: "bin/busybox", Data: "\x7fELF not really", Mode: 0o755},
		))
		ti.gobin = vulntest.Image(t, vulntest.Layer(t,
			vulntest.File{Path: "usr/local/bin/vulnapp", Data: string(ti.goBinary), Mode: 0o755},
		))
		curl := "P:curl\nV:8.5.0-r0\nA:x86_64\no:curl\nF:usr/bin\nR:curl\n\n"
		ti.whiteout = vulntest.Image(t,
			vulntest.Layer(t,
				vulntest.File{Path: "etc/os-release", Data: ti.alpineRel},
				vulntest.File{Path: "lib/apk/db/installed", Data: ti.apkDB + curl},
				vulntest.File{Path: "usr/bin/curl", Data: "\x7fELF curl", Mode: 0o755},
				vulntest.File{Path: "usr/local/bin/vulnapp", Data: string(ti.goBinary), Mode: 0o755},
				vulntest.File{Path: "opt/app/node_modules/lodash/package.json", Data: `{"name":"lodash","version":"4.17.20"}`},
			),
			// `apk del curl` and `rm /usr/local/bin/vulnapp`: a new database and whiteouts.
			vulntest.Layer(t,
				vulntest.File{Path: "lib/apk/db/installed", Data: ti.apkDB},
				vulntest.File{Path: "usr/bin/.wh.curl"},
				vulntest.File{Path: "usr/local/bin/.wh.vulnapp"},
			),
			// An opaque directory replaces the whole node_modules tree.
			vulntest.Layer(t,
				vulntest.File{Path: "opt/app/node_modules/.wh..wh..opq"},
				vulntest.File{Path: "opt/app/node_modules/left-pad/package.json", Data: `{"name":"left-pad","version":"1.3.0"}`},
			),
		)
		images = ti
	})
	if images == nil {
		t.Fatal("building the test images failed in an earlier test")
	}
	return images
}

// importFixtures imports the OSV fixtures (and optionally the real Go
// vulnerability database) into svc.
func importFixtures(t testing.TB, svc *Service, withGo bool) {
	t.Helper()
	ctx := t.Context()
	for _, d := range []string{"debian", "alpine", "cve"} {
		if _, err := svc.ImportDB(ctx, filepath.Join("testdata", "osv", d), nil); err != nil {
			t.Fatalf("importing %s fixtures: %v", d, err)
		}
	}
	if withGo {
		if _, err := svc.ImportDB(ctx, vulntest.GoVulnDB(t), nil); err != nil {
			t.Fatalf("importing golang.org/x/vulndb: %v", err)
		}
	}
}
