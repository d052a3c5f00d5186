package vuln

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/palisade-dev/palisade/internal/vuln/image"
)

// TestScanSources: the same Alpine image scanned from an OCI layout, a
// docker archive and an unpacked root filesystem gives the same packages and
// findings, and the JSON findings carry the documented fields.
func TestScanSources(t *testing.T) {
	ti := buildImages(t)
	svc, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	importFixtures(t, svc, false)

	dir := t.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(ti.alpine); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("lab/alpine:3.19")
	archive := filepath.Join(dir, "alpine.tar")
	if err := tarball.WriteToFile(archive, tag, ti.alpine); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	for p, data := range map[string]string{"etc/os-release": ti.alpineRel, "lib/apk/db/installed": ti.apkDB} {
		os.MkdirAll(filepath.Join(rootfs, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(rootfs, p), []byte(data), 0o644)
	}

	var want []string
	for _, ref := range []string{"oci-layout:" + filepath.Join(dir, "layout"), "docker-archive:" + archive, "dir:" + rootfs} {
		src, err := image.ParseSource(ref)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := svc.ScanSource(t.Context(), src)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		got := findingKeys(rep.Findings)
		if want == nil {
			want = got
		} else if !slices.Equal(got, want) {
			t.Errorf("%s findings %v, want %v", ref, got, want)
		}
		if len(rep.Packages) != 8 {
			t.Errorf("%s: %d packages", ref, len(rep.Packages))
		}
		js, _ := json.Marshal(rep.Findings[0])
		var m map[string]any
		json.Unmarshal(js, &m)
		for _, k := range []string{"id", "aliases", "package", "installed", "fixed", "severity", "score", "ecosystem", "type"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%s: JSON finding lacks %q: %s", ref, k, js)
			}
		}
	}
	if len(want) != 5 {
		t.Errorf("findings = %v", want)
	}
	for _, bad := range []string{"dir:", "oci-layout:", "not a ref!"} {
		if _, err := image.ParseSource(bad); err == nil {
			t.Errorf("ParseSource(%q): no error", bad)
		}
	}
}
