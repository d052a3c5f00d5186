// Package vulntest builds the scanner's test fixtures: images made with
// go-containerregistry, an in-process registry (optionally behind basic
// auth), a Debian root filesystem, a Go binary, and the outside tools and
// data the acceptance tests compare against (syft, golang.org/x/vulndb).
// Missing prerequisites fail the test with the command that fixes them.
package vulntest

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"

	"github.com/palisade-dev/palisade/internal/vuln/sample"
)

// File is one entry of a test layer.
type File struct {
	Path string
	Data string
	Mode int64  // default 0644 (0755 for Exec)
	Link string // symlink target (Type 0 with Link set makes a symlink)
	Dir  bool
}

// TarBytes writes entries as an uncompressed tar.
func TarBytes(t testing.TB, files ...File) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.Path, Mode: f.Mode, ModTime: time.Unix(0, 0)}
		switch {
		case f.Dir:
			h.Typeflag = tar.TypeDir
			if h.Mode == 0 {
				h.Mode = 0o755
			}
		case f.Link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.Link
			h.Mode = 0o777
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
			if h.Mode == 0 {
				h.Mode = 0o644
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, f.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Layer makes a gzip layer of entries.
func Layer(t testing.TB, files ...File) v1.Layer {
	t.Helper()
	return LayerFromTar(t, TarBytes(t, files...))
}

// LayerFromTar makes a gzip layer from an uncompressed tar.
func LayerFromTar(t testing.TB, data []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithCompressionLevel(gzip.BestSpeed), tarball.WithCompressedCaching)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// DirLayer tars a directory tree (a root filesystem) into a layer without
// following symlinks. Sockets are skipped; var/cache/apt/archives is left out.
func DirLayer(t testing.TB, root string) v1.Layer {
	t.Helper()
	tmp := filepath.Join(t.TempDir(), "layer.tar")
	f, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	err = filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." || info.Mode()&os.ModeSocket != 0 || strings.HasPrefix(rel, "var/cache/apt/archives/") {
			return nil
		}
		link := ""
		if info.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname = "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, src)
			src.Close()
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		t.Fatalf("taring %s: %v", root, err)
	}
	l, err := tarball.LayerFromFile(tmp, tarball.WithCompressionLevel(gzip.BestSpeed), tarball.WithCompressedCaching)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Image stacks layers (bottom first) into a linux/amd64 image.
func Image(t testing.TB, layers ...v1.Layer) v1.Image {
	t.Helper()
	return PlatformImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, layers...)
}

// PlatformImage stacks layers (bottom first) into an image whose config
// names platform p.
func PlatformImage(t testing.TB, p v1.Platform, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Registry serves an in-process registry on loopback; with user set, every
// request needs that basic-auth user and password. It returns the host:port.
func Registry(t testing.TB, user, password string) string {
	t.Helper()
	h := registry.New(registry.Logger(nilLogger()))
	if user != "" {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="palisade-test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			inner.ServeHTTP(w, r)
		})
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Push writes img to ref and returns its manifest digest.
func Push(t testing.TB, img v1.Image, ref string, auth authn.Authenticator) string {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if auth == nil {
		auth = authn.Anonymous
	}
	if err := remote.Write(r, img, remote.WithAuth(auth)); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// PushIndex writes a multi-platform index of imgs (each described by the
// platform its config names) to ref and returns the index digest.
func PushIndex(t testing.TB, ref string, imgs ...v1.Image) string {
	t.Helper()
	var adds []mutate.IndexAddendum
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}}})
	}
	idx := mutate.AppendManifests(empty.Index, adds...)
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// RepoRoot finds the repository root (the directory holding go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root (go.mod) not found")
		}
		dir = parent
	}
}

// CacheDir is ~/.cache/palisade (or $PALISADE_CACHE).
func CacheDir(t testing.TB) string {
	if d := os.Getenv("PALISADE_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(home, ".cache", "palisade")
}

// DebianRootfs returns the debootstrap bookworm minbase root filesystem,
// building it with scripts/ensure-rootfs.sh (about a minute) if missing.
func DebianRootfs(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(CacheDir(t), "rootfs", "bookworm-minbase")
	if _, err := os.Stat(filepath.Join(dir, ".palisade-complete")); err == nil {
		return dir
	}
	out, err := exec.Command("bash", filepath.Join(RepoRoot(t), "scripts", "ensure-rootfs.sh")).CombinedOutput()
	if err != nil {
		t.Fatalf("the Debian test root filesystem is missing and building it failed: %v\n%s\n"+
			"fix: run `bash scripts/ensure-rootfs.sh` as root (needs `apt-get install debootstrap` and the Debian mirror)", err, out)
	}
	return dir
}

// SyftVersion is the reference tool's version the package sets are compared with.
const SyftVersion = "v1.57.1"

// Syft returns the path of the syft binary built by scripts/ensure-syft.sh.
func Syft(t testing.TB) string {
	t.Helper()
	p := filepath.Join(CacheDir(t), "syft", SyftVersion, "syft")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("syft %s is not at %s: run `bash scripts/ensure-syft.sh` (builds it from the Go module proxy, ~5 minutes)", SyftVersion, p)
	}
	return p
}

// VulnDBVersion is the golang.org/x/vulndb module version used as real Go
// vulnerability data.
const VulnDBVersion = sample.VulnDBVersion

// GoVulnDB returns the data/osv directory of the golang.org/x/vulndb module,
// downloading the module through the Go module proxy if needed.
func GoVulnDB(t testing.TB) string {
	t.Helper()
	dir, err := sample.GoVulnDB()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func nilLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// GovulncheckVersion is the reference tool Go findings are compared with.
const GovulncheckVersion = "v1.9.0"

// Govulncheck returns govulncheck's path and a local Go vulnerability
// database built by golang.org/x/vulndb's cmd/indexdb from the same
// golang.org/x/vulndb data the tests import, building both with
// scripts/ensure-govulncheck.sh (from the Go module proxy) if missing.
func Govulncheck(t testing.TB) (bin, db string) {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(RepoRoot(t), "scripts", "ensure-govulncheck.sh"))
	cmd.Env = append(os.Environ(), "GOVULNCHECK_VERSION="+GovulncheckVersion, "VULNDB_VERSION="+VulnDBVersion)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("govulncheck %s and its database are missing and building them failed: %v\n%s\n"+
			"fix: run `bash scripts/ensure-govulncheck.sh` with the Go module proxy reachable", GovulncheckVersion, err, stderr.String())
	}
	dir := strings.TrimSpace(string(out))
	return filepath.Join(dir, "govulncheck"), filepath.Join(dir, "db-"+VulnDBVersion)
}

// CPUPerOp reports the process's CPU time (user + system, all cores) per
// operation as "cpu-ms/op"; call it before the loop and defer the result.
// On a machine shared with other work, wall time measures the neighbours.
func CPUPerOp(b *testing.B) func() {
	start := cpuTime()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((cpuTime()-start).Microseconds())/1000/float64(b.N), "cpu-ms/op")
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
