package vuln

import (
	"os"
	"os/exec"
	"testing"

	"github.com/palisade-dev/palisade/internal/vuln/image"
	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
)

// dropLayerCache empties the layer cache so the next scan pulls and reads
// every layer again.
func (s *Service) dropLayerCache(testing.TB) {
	c := s.layers
	c.mu.Lock()
	defer c.mu.Unlock()
	for d := range c.entries {
		c.removeLocked(d)
	}
}

// BenchmarkScan measures a full scan — pull from a loopback registry,
// inventory, match against golang.org/x/vulndb plus the fixtures — of the
// debootstrap Debian image and of the Go binary image, with a cold layer
// cache, and syft v1.57.1's SBOM time alone on the same images in the same
// run. Results are recorded in docs/BENCHMARKS.md.
func BenchmarkScan(b *testing.B) {
	syft := vulntest.Syft(b)
	ti := buildImages(b)
	reg := vulntest.Registry(b, "", "")
	debRef := reg + "/bench/bookworm-minbase:1"
	vulntest.Push(b, vulntest.Image(b, vulntest.DirLayer(b, vulntest.DebianRootfs(b))), debRef, nil)
	goRef := reg + "/bench/goapp:1"
	vulntest.Push(b, ti.gobin, goRef, nil)
	svc, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	importFixtures(b, svc, true)

	for _, c := range []struct{ name, ref string }{{"debian", debRef}, {"go", goRef}} {
		b.Run(c.name+"/palisade", func(b *testing.B) {
			pkgs := 0
			for b.Loop() {
				b.StopTimer()
				svc.dropLayerCache(b)
				b.StartTimer()
				rep, err := svc.ScanSource(b.Context(), image.Source{Kind: image.KindRegistry, Ref: c.ref})
				if err != nil {
					b.Fatal(err)
				}
				pkgs = len(rep.Packages)
			}
			b.ReportMetric(float64(pkgs), "packages")
		})
		// Warm: every layer summary comes from the layer cache's files (a
		// base layer shared by many images), so only the manifest is pulled.
		b.Run(c.name+"/palisade-warm", func(b *testing.B) {
			if _, err := svc.ScanSource(b.Context(), image.Source{Kind: image.KindRegistry, Ref: c.ref}); err != nil {
				b.Fatal(err)
			}
			defer vulntest.CPUPerOp(b)()
			for b.Loop() {
				if _, err := svc.ScanSource(b.Context(), image.Source{Kind: image.KindRegistry, Ref: c.ref}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/syft", func(b *testing.B) {
			for b.Loop() {
				cmd := exec.Command(syft, "scan", "registry:"+c.ref, "-o", "syft-json", "-q")
				cmd.Env = append(os.Environ(), "SYFT_CHECK_FOR_APP_UPDATE=false", "SYFT_REGISTRY_INSECURE_USE_HTTP=true")
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("syft: %v\n%.2000s", err, out)
				}
			}
		})
	}
}
