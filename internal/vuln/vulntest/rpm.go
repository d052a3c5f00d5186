package vulntest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// RPM describes a tiny noarch package for RPMDB.
type RPM struct {
	Name, Version, Release string
	Epoch                  int    // 0: no Epoch tag
	Sub                    string // a subpackage NAME-SUB built from the same source rpm
}

func (r RPM) spec() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Name: %s\nVersion: %s\nRelease: %s\n", r.Name, r.Version, r.Release)
	if r.Epoch > 0 {
		fmt.Fprintf(&b, "Epoch: %d\n", r.Epoch)
	}
	b.WriteString("Summary: Palisade test package\nLicense: MIT\nBuildArch: noarch\n%description\nA Palisade scanner test package.\n")
	dirs := []string{r.Name}
	if r.Sub != "" {
		dirs = append(dirs, r.Name+"-"+r.Sub)
		fmt.Fprintf(&b, "%%package %[1]s\nSummary: Palisade test subpackage\n%%description %[1]s\nA subpackage.\n", r.Sub)
	}
	b.WriteString("%install\n")
	for _, d := range dirs {
		fmt.Fprintf(&b, "mkdir -p %%{buildroot}/usr/share/%[1]s\necho %[1]s > %%{buildroot}/usr/share/%[1]s/README\n", d)
	}
	fmt.Fprintf(&b, "%%files\n/usr/share/%s/README\n", r.Name)
	if r.Sub != "" {
		fmt.Fprintf(&b, "%%files %s\n/usr/share/%s/README\n", r.Sub, dirs[1])
	}
	return b.String()
}

// RPMDB returns the directory of a real rpm database (rpm 4.18 from Debian
// writes rpmdb.sqlite) into which the packages were installed with
// `rpm -i --justdb`, after building them with rpmbuild. Databases are
// cached under CacheDir by the hash of their specs.
func RPMDB(t testing.TB, pkgs ...RPM) string {
	t.Helper()
	for _, tool := range []string{"rpm", "rpmbuild"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run `apt-get install rpm` (or scripts/ensure-deps.sh)", tool)
		}
	}
	var specs []string
	for _, p := range pkgs {
		specs = append(specs, p.spec())
	}
	sum := sha256.Sum256([]byte(strings.Join(specs, "\x00")))
	dir := filepath.Join(CacheDir(t), "rpmdb-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(filepath.Join(dir, "rpmdb.sqlite")); err == nil {
		return dir
	}
	work := t.TempDir()
	db := filepath.Join(work, "db")
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = work
		cmd.Env = append(os.Environ(), "HOME="+work) // no ~/.rpmmacros of the user
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	run("rpm", "--dbpath", db, "--initdb")
	for i, s := range specs {
		spec := filepath.Join(work, fmt.Sprintf("p%d.spec", i))
		if err := os.WriteFile(spec, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		run("rpmbuild", "--quiet", "-bb", "--define", "_topdir "+filepath.Join(work, "top"), "--define", "_build_id_links none", spec)
	}
	rpms, _ := filepath.Glob(filepath.Join(work, "top", "RPMS", "noarch", "*.rpm"))
	if len(rpms) < len(pkgs) {
		t.Fatalf("rpmbuild made %d packages, want at least %d: %v", len(rpms), len(pkgs), rpms)
	}
	run("rpm", append([]string{"-i", "--nodeps", "--justdb", "--dbpath", db}, rpms...)...)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := dir + ".tmp" + fmt.Sprint(os.Getpid())
	os.RemoveAll(tmp)
	if err := os.Rename(db, tmp); err != nil {
		if err := os.CopyFS(tmp, os.DirFS(db)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(tmp, dir); err != nil && !os.IsExist(err) {
		if _, serr := os.Stat(filepath.Join(dir, "rpmdb.sqlite")); serr != nil {
			t.Fatal(err)
		}
		os.RemoveAll(tmp)
	}
	return dir
}
