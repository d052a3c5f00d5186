// Package sample builds the known-vulnerable sample image that the demo
// runs and the tests scan: a static Go program linking golang.org/x/text
// v0.3.7 and golang.org/x/net v0.7.0, plus the real Go vulnerability data
// (golang.org/x/vulndb) to match it against. Both come from the Go module
// proxy (or the module cache); nothing else is downloaded.
package sample

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// GoAppModules are the modules the sample Go program links, as its build
// information reports them after replacement.
var GoAppModules = map[string]string{
	"golang.org/x/text": "v0.3.7",
	"golang.org/x/net":  "v0.7.0",
}

// VulnDBVersion is the golang.org/x/vulndb module version used as real Go
// vulnerability data.
const VulnDBVersion = "v0.0.0-20261105234957-e22db6528018"

const goAppMain = `package main

import (
	"fmt"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/text/language"
)

func main() {
	tags, _, err := language.ParseAcceptLanguage("en-US,fr;q=0.8")
	doc, _ := html.Parse(strings.NewReader("<p>hello</p>"))
	fmt.Println(tags, err, doc != nil)
}
`

// x/net v0.7.0 requires x/text v0.7.0, so keeping x/text at v0.3.7 (the
// version GO-2022-1059 affects) needs a replacement.
const goAppMod = `module example.com/palisade/vulnapp

go 1.22

require (
	golang.org/x/net v0.7.0
	golang.org/x/text v0.3.7
)

replace golang.org/x/text => golang.org/x/text v0.3.7
`

// GoApp builds the sample program (static, unstripped, linux) in dir and
// returns its bytes.
func GoApp(dir string) ([]byte, error) {
	return BuildGoApp(dir, GoAppBuild{})
}

// GoAppBuild varies the sample program's build.
type GoAppBuild struct {
	GOOS, GOARCH string // default: the toolchain's host platform ("" = linux/amd64 here)
	Strip        bool   // -ldflags=-s -w: no symbol table, no DWARF
}

// BuildGoApp builds the sample program in dir as b says and returns its bytes.
func BuildGoApp(dir string, b GoAppBuild) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for name, data := range map[string]string{"main.go": goAppMain, "go.mod": goAppMod} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			return nil, err
		}
	}
	build := []string{"build", "-o", "vulnapp"}
	if b.Strip {
		build = append(build, "-ldflags=-s -w")
	}
	env := append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off")
	if b.GOOS != "" {
		env = append(env, "GOOS="+b.GOOS)
	}
	if b.GOARCH != "" {
		env = append(env, "GOARCH="+b.GOARCH)
	}
	for _, args := range [][]string{{"mod", "tidy"}, append(build, ".")} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go %v: %w\n%s\n(the Go module proxy must be reachable, or the modules in the module cache)", args, err, out)
		}
	}
	return os.ReadFile(filepath.Join(dir, "vulnapp"))
}

// GoVulnDB returns the data/osv directory of the golang.org/x/vulndb module,
// downloading the module through the Go module proxy if needed.
func GoVulnDB() (string, error) {
	dir, err := os.MkdirTemp("", "palisade-vulndb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("go", "mod", "download", "-json", "golang.org/x/vulndb@"+VulnDBVersion)
	cmd.Dir = dir
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	_ = json.Unmarshal(out, &info)
	if err != nil || info.Dir == "" {
		return "", fmt.Errorf("golang.org/x/vulndb@%s is not in the module cache and could not be downloaded (%v %s): "+
			"run `go mod download golang.org/x/vulndb@%s` with the Go module proxy reachable", VulnDBVersion, err, info.Error, VulnDBVersion)
	}
	osv := filepath.Join(info.Dir, "data", "osv")
	if _, err := os.Stat(filepath.Join(osv, "GO-2022-1059.json")); err != nil {
		return "", fmt.Errorf("golang.org/x/vulndb@%s has no data/osv/GO-2022-1059.json: %w", VulnDBVersion, err)
	}
	return osv, nil
}

// Image wraps one executable into a single-layer image at path.
func Image(path string, exe []byte) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: path, Mode: 0o755, Size: int64(len(exe)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(exe); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(empty.Image, layer)
}

// Registry serves an in-process OCI registry on 127.0.0.1 and returns its
// host:port and a function that stops it.
func Registry() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	// Its per-request log goes where the standard logger goes (the demo
	// sends it to its log file).
	srv := &http.Server{Handler: registry.New(registry.Logger(log.Default())), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	return ln.Addr().String(), func() { srv.Close() }, nil
}

// Push writes img to ref (a loopback registry: plain HTTP) and returns the
// pushed reference by digest.
func Push(img v1.Image, ref string) (string, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", err
	}
	if err := remote.Write(r, img); err != nil {
		return "", fmt.Errorf("pushing %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	if d.String() == "" {
		return "", errors.New("image without digest")
	}
	return r.Context().Digest(d.String()).String(), nil
}
