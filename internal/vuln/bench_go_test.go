package vuln

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/vuln/image"
	"github.com/palisade-dev/palisade/internal/vuln/pkgdb"
	"github.com/palisade-dev/palisade/internal/vuln/sample"
	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
)

// BenchmarkGoScan measures what symbol-level matching costs and how the
// scanner compares with govulncheck v1.9.0 on the same executables, in the
// same run: the sample program (x/net v0.7.0, x/text v0.3.7; 3 MB) and
// Palisade's own binary (55 MB, 200+ modules).
//
//   - palisade-image/{symbols,buildinfo}: full scan of a one-layer image
//     holding the executable, pulled from a loopback registry with a cold
//     layer cache, matched against golang.org/x/vulndb — with symbol
//     reading (today) and with build information only (before).
//   - palisade-file/{symbols,buildinfo}: the same on the executable on disk
//     (dir: source), which is what govulncheck reads.
//   - govulncheck: `govulncheck -mode=binary -json -db file://DB FILE`,
//     with the local database built by x/vulndb's cmd/indexdb.
//
// Results are recorded in docs/BENCHMARKS.md.
func BenchmarkGoScan(b *testing.B) {
	govulncheck, db := vulntest.Govulncheck(b)
	dir := b.TempDir()
	small, err := sample.BuildGoApp(filepath.Join(dir, "sample"), sample.GoAppBuild{})
	if err != nil {
		b.Fatal(err)
	}
	large := filepath.Join(dir, "palisade")
	build := exec.Command("go", "build", "-o", large, "./cmd/palisade")
	build.Dir = vulntest.RepoRoot(b)
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building palisade: %v\n%s", err, out)
	}
	largeData, err := os.ReadFile(large)
	if err != nil {
		b.Fatal(err)
	}
	reg := vulntest.Registry(b, "", "")
	svc, err := Open(b.TempDir(), Options{Registries: []string{"127.0.0.1"}})
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	if _, err := svc.ImportDB(b.Context(), vulntest.GoVulnDB(b), nil); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		exe  []byte
	}{{"sample", small}, {"palisade", largeData}} {
		root := filepath.Join(dir, "root-"+c.name)
		if err := os.MkdirAll(filepath.Join(root, "app"), 0o755); err != nil {
			b.Fatal(err)
		}
		file := filepath.Join(root, "app", c.name)
		if err := os.WriteFile(file, c.exe, 0o755); err != nil {
			b.Fatal(err)
		}
		ref := reg + "/bench/" + c.name + ":1"
		vulntest.Push(b, vulntest.Image(b, vulntest.Layer(b, vulntest.File{Path: "app/" + c.name, Data: string(c.exe), Mode: 0o755})), ref, nil)
		srcs := map[string]image.Source{
			"palisade-image": {Kind: image.KindRegistry, Ref: ref},
			"palisade-file":  {Kind: image.KindDir, Ref: root},
		}
		for _, how := range []string{"palisade-image", "palisade-file"} {
			for _, mode := range []struct {
				name  string
				probe func(string, io.ReaderAt, int64) ([]byte, error)
			}{{"symbols", pkgdb.Probe}, {"buildinfo", pkgdb.ProbeBuildInfo}} {
				b.Run(c.name+"/"+how+"/"+mode.name, func(b *testing.B) {
					probeExecutable = mode.probe
					defer func() { probeExecutable = pkgdb.Probe }()
					findings, reachable := 0, 0
					defer vulntest.CPUPerOp(b)()
					for b.Loop() {
						b.StopTimer()
						svc.dropLayerCache(b)
						b.StartTimer()
						rep, err := svc.ScanSource(b.Context(), srcs[how])
						if err != nil {
							b.Fatal(err)
						}
						findings, reachable = len(rep.Findings), 0
						for _, f := range rep.Findings {
							if f.Reachable != nil && *f.Reachable {
								reachable++
							}
						}
					}
					b.ReportMetric(float64(findings), "findings")
					b.ReportMetric(float64(reachable), "reachable")
				})
			}
		}
		b.Run(c.name+"/govulncheck", func(b *testing.B) {
			var cpu time.Duration
			for b.Loop() {
				cmd := exec.Command(govulncheck, "-db", "file://"+db, "-mode=binary", "-json", file)
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("govulncheck: %v\n%.2000s", err, out)
				}
				cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			}
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
		})
	}
}
