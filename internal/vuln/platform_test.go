package vuln

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/vuln/image"
	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
)

var (
	linuxAMD64 = v1.Platform{OS: "linux", Architecture: "amd64"}
	linuxARM64 = v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
)

// platformImages builds the Alpine test image for linux/amd64 and
// linux/arm64 (the arm64 one's apk database says aarch64, as a real one
// does) and pushes them as one multi-platform index.
func platformImages(t *testing.T) (reg, ref, index string) {
	ti := buildImages(t)
	mk := func(p v1.Platform, apkArch string) v1.Image {
		return vulntest.PlatformImage(t, p, vulntest.Layer(t,
			vulntest.File{Path: "etc/os-release", Data: ti.alpineRel},
			vulntest.File{Path: "lib/apk/db/installed", Data: strings.ReplaceAll(ti.apkDB, "A:x86_64\n", "A:"+apkArch+"\n")},
		))
	}
	reg = vulntest.Registry(t, "", "")
	ref = reg + "/lab/alpine-multi:3.19"
	index = vulntest.PushIndex(t, ref, mk(linuxAMD64, "x86_64"), mk(linuxARM64, "aarch64"))
	return reg, ref, index
}

func cveSet(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.canonicalID()+" "+f.Package)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestPlatformMatching: OS packages are matched against the platform of
// the image scanned. An Alpine secdb file whose archs are x86/x86_64 and an
// OSV record whose purl says arch=aarch64 are reported only for images of
// their architecture; a record without a limit for both. Through the
// service, pods of one multi-platform index on an amd64 and an arm64 node
// get the image of their node's platform scanned, with findings and
// attributes for that platform, the platform stated in the report; the
// result is kept across a restart without a rescan.
func TestPlatformMatching(t *testing.T) {
	_, ref, index := platformImages(t)
	want := map[string][]string{
		"linux/amd64": {"CVE-2023-42363 busybox", "CVE-2023-42363 ssl_client", "CVE-2024-2511 libcrypto3", "CVE-2024-2511 libssl3"},
		"linux/arm64": {"CVE-2023-42363 busybox", "CVE-2023-42363 ssl_client", "CVE-2025-26519 musl"},
	}

	t.Run("scan", func(t *testing.T) {
		for _, p := range []v1.Platform{linuxAMD64, linuxARM64} {
			svc, err := Open(t.TempDir(), Options{Platform: &p})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := svc.ImportDB(t.Context(), filepath.Join("testdata", "platform"), nil); err != nil {
				t.Fatal(err)
			}
			rep, err := svc.ScanSource(t.Context(), image.Source{Kind: image.KindRegistry, Ref: ref})
			svc.Close()
			if err != nil {
				t.Fatal(err)
			}
			key := "linux/" + p.Architecture
			if got := cveSet(rep.Findings); !slices.Equal(got, want[key]) {
				t.Errorf("%s: findings %q, want %q", key, got, want[key])
			}
			if rep.Arch != p.Architecture || rep.Platform != p.String() {
				t.Errorf("%s: report says arch %q, platform %q", key, rep.Arch, rep.Platform)
			}
		}
	})

	t.Run("service", func(t *testing.T) {
		nodes := map[string]v1.Platform{"node-amd64": linuxAMD64, "node-arm64": linuxARM64}
		dir := t.TempDir()
		var log attrLog
		opts := Options{Registries: []string{"127.0.0.1"}, OnAttrs: log.record,
			NodePlatform: func(cluster, node string) (v1.Platform, bool) {
				p, ok := nodes[node]
				return p, ok && cluster == "lab"
			}}
		svc, err := Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.ImportDB(t.Context(), filepath.Join("testdata", "platform"), nil); err != nil {
			t.Fatal(err)
		}
		pods := []inventory.Workload{
			pod("x86", ref, index, nil, ""), pod("arm", ref, index, nil, ""), pod("unscheduled", ref, index, nil, ""),
		}
		pods[0].Node, pods[1].Node = "node-amd64", "node-arm64"
		svc.Observe(pods)
		wait(t, svc)

		imgs := svc.Images()
		var platforms []string
		scanned := map[string]*ImageReport{}
		for _, is := range imgs {
			platforms = append(platforms, is.Platform+" "+strings.Join(is.Workloads, ","))
			if is.Status != "scanned" {
				t.Fatalf("image %s for %s: %s %s", is.Image, is.Platform, is.Status, is.Error)
			}
			if is.Digest == index {
				t.Errorf("image for %s lists the index digest, not its image's", is.Platform)
			}
			rep, ok := svc.Image(is.Digest)
			if !ok {
				t.Fatalf("no report for %s", is.Digest)
			}
			scanned[is.Platform] = rep
		}
		slices.Sort(platforms)
		wantP := []string{"linux/amd64 lab/pod/lab/unscheduled,lab/pod/lab/x86", "linux/arm64/v8 lab/pod/lab/arm"}
		if !slices.Equal(platforms, wantP) {
			t.Fatalf("images by platform %q, want %q", platforms, wantP)
		}
		for p, rep := range scanned {
			w := want[p]
			if p == "linux/arm64/v8" {
				w = want["linux/arm64"]
			}
			if got := cveSet(rep.Findings); !slices.Equal(got, w) {
				t.Errorf("%s: findings %q, want %q", p, got, w)
			}
			if rep.Platform != p {
				t.Errorf("report platform %q, want %q", rep.Platform, p)
			}
		}
		wantAttr(t, log.get("lab/pod/lab/x86"), AttrCVE, "CVE-2023-42363", "CVE-2024-2511")
		wantAttr(t, log.get("lab/pod/lab/unscheduled"), AttrCVE, "CVE-2023-42363", "CVE-2024-2511")
		wantAttr(t, log.get("lab/pod/lab/arm"), AttrCVE, "CVE-2023-42363", "CVE-2025-26519")
		armScanned := scanned["linux/arm64/v8"].ScannedAt
		svc.Close()

		// After a restart the index digest and platform still name the
		// scanned image: attributes at once, no new scan.
		svc, log2 := reopen(t, dir, opts)
		svc.Observe(pods)
		wantAttr(t, log2.get("lab/pod/lab/arm"), AttrCVE, "CVE-2023-42363", "CVE-2025-26519")
		wait(t, svc)
		for _, is := range svc.Images() {
			if is.Platform == "linux/arm64/v8" {
				if rep, _ := svc.Image(is.Digest); rep == nil || !rep.ScannedAt.Equal(armScanned) {
					t.Errorf("the arm64 image was scanned again after a restart")
				}
			}
		}
	})
}
