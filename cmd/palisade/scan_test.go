package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCmd(t *testing.T, args ...string) string {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		t.Fatalf("palisade %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// TestScanImageCLI: `palisade vulndb import` then `palisade scan image
// dir:ROOTFS -o json|table|cyclonedx` with a shared --data directory.
func TestScanImageCLI(t *testing.T) {
	data := t.TempDir()
	fixtures, _ := filepath.Glob("../../internal/vuln/testdata/osv/*/*.json")
	if out := runCmd(t, "vulndb", "import", "../../internal/vuln/testdata/osv", "--data", data); len(fixtures) == 0 ||
		!strings.Contains(out, fmt.Sprintf("%d added", len(fixtures))) {
		t.Errorf("import output (%d fixtures): %s", len(fixtures), out)
	}
	rootfs := t.TempDir()
	status, err := os.ReadFile("../../internal/vuln/pkgdb/testdata/bookworm/status")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(rootfs, "var/lib/dpkg"), 0o755)
	os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "var/lib/dpkg/status"), status, 0o644)
	os.WriteFile(filepath.Join(rootfs, "etc/os-release"), []byte("ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"), 0o644)

	var rep struct {
		Findings []map[string]any `json:"findings"`
	}
	if err := json.Unmarshal([]byte(runCmd(t, "scan", "image", "dir:"+rootfs, "-o", "json", "--data", data)), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 5 {
		t.Fatalf("findings = %v", rep.Findings)
	}
	f := rep.Findings[0]
	if f["id"] != "DEBIAN-CVE-2023-45853" || f["package"] != "zlib1g" || f["installed"] != "1:1.2.13.dfsg-1" ||
		f["fixed"] != "1:1.3.dfsg-3.1" || f["severity"] != "CRITICAL" || f["aliases"] == nil {
		t.Errorf("first finding = %v", f)
	}
	if table := runCmd(t, "scan", "image", "dir:"+rootfs, "--data", data); !strings.Contains(table, "DEBIAN-CVE-2023-45853") {
		t.Errorf("table output:\n%s", table)
	}
	var bom map[string]any
	if err := json.Unmarshal([]byte(runCmd(t, "scan", "image", "dir:"+rootfs, "-o", "cyclonedx", "--data", data)), &bom); err != nil || bom["bomFormat"] != "CycloneDX" {
		t.Errorf("cyclonedx: %v %v", err, bom["bomFormat"])
	}
}
