package goexe

import (
	"bytes"
	"debug/buildinfo"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
)

// BenchmarkRead reads build information and symbols of Palisade's own
// binary (55 MB), against build information alone.
func BenchmarkRead(b *testing.B) {
	exe := filepath.Join(b.TempDir(), "palisade")
	cmd := exec.Command("go", "build", "-o", exe, "github.com/palisade-dev/palisade/cmd/palisade")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("symbols", func(b *testing.B) {
		n := 0
		defer vulntest.CPUPerOp(b)()
		for b.Loop() {
			info, err := Read(bytes.NewReader(data))
			if err != nil {
				b.Fatal(err)
			}
			n = 0
			for _, s := range info.Symbols {
				n += len(s)
			}
		}
		b.ReportMetric(float64(n), "symbols")
	})
	b.Run("buildinfo", func(b *testing.B) {
		defer vulntest.CPUPerOp(b)()
		for b.Loop() {
			if _, err := buildinfo.Read(bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
