// Package devkube runs a real Kubernetes control plane (etcd,
// kube-apiserver, kube-controller-manager) on 127.0.0.1 for tests, the lab
// and the demo. The binaries are built once from the Go module proxy and
// cached outside the repository.
package devkube

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Versions of the control plane Palisade is tested against. client-go and
// k8s.io/api in go.mod are pinned to the matching v0.x release.
const (
	KubernetesVersion = "v1.37.2"
	StagingVersion    = "v0.37.2"
	EtcdVersion       = "v3.7.3"
)

// stagingModules are the modules k8s.io/kubernetes replaces with its
// ./staging tree; a build outside that tree must pin each to StagingVersion.
var stagingModules = []string{
	"api", "apiextensions-apiserver", "apimachinery", "apiserver", "cli-runtime",
	"client-go", "cloud-provider", "cluster-bootstrap", "code-generator",
	"component-base", "component-helpers", "controller-manager", "cri-api",
	"cri-client", "cri-streaming", "csi-translation-lib",
	"dynamic-resource-allocation", "endpointslice", "externaljwt", "kms",
	"kube-aggregator", "kube-controller-manager", "kube-proxy", "kube-scheduler",
	"kubectl", "kubelet", "metrics", "mount-utils", "pod-security-admission",
	"sample-apiserver", "sample-cli-plugin", "sample-controller", "streaming",
}

var etcdModules = []string{"api/v3", "client/pkg/v3", "client/v3", "pkg/v3"}

// Binaries are the paths of the control-plane executables.
type Binaries struct {
	Etcd              string
	APIServer         string
	ControllerManager string
}

// CacheDir is where binaries are built and kept: $PALISADE_CACHE or
// ~/.cache/palisade.
func CacheDir() string {
	if d := os.Getenv("PALISADE_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "palisade")
	}
	return filepath.Join(os.TempDir(), "palisade-cache")
}

// CachedBinaries returns the binaries' paths and whether all of them exist.
func CachedBinaries() (Binaries, bool) {
	k := filepath.Join(CacheDir(), "k8s", KubernetesVersion)
	b := Binaries{
		Etcd:              filepath.Join(CacheDir(), "etcd", EtcdVersion, "etcd"),
		APIServer:         filepath.Join(k, "kube-apiserver"),
		ControllerManager: filepath.Join(k, "kube-controller-manager"),
	}
	for _, p := range []string{b.Etcd, b.APIServer, b.ControllerManager} {
		if _, err := os.Stat(p); err != nil {
			return b, false
		}
	}
	return b, true
}

// EnsureBinaries builds whatever control-plane binary is missing from the
// cache (a cold build takes about 8 minutes on 2 cores) and returns their
// paths. Build output goes to log.
func EnsureBinaries(ctx context.Context, log io.Writer) (Binaries, error) {
	b, ok := CachedBinaries()
	if ok {
		return b, nil
	}
	// One build at a time per cache: parallel test binaries and the CLI
	// would otherwise compile the same packages side by side and race on
	// the same temporary output file. Whoever waits finds the cache warm.
	unlock, err := lockCache(ctx, log)
	if err != nil {
		return b, err
	}
	defer unlock()
	if b, ok = CachedBinaries(); ok {
		return b, nil
	}
	if _, err := os.Stat(b.Etcd); err != nil {
		var gomod strings.Builder
		fmt.Fprintf(&gomod, "module palisade.local/etcdbuild\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 %s\n\nreplace (\n", EtcdVersion)
		for _, m := range etcdModules {
			fmt.Fprintf(&gomod, "\tgo.etcd.io/etcd/%s => go.etcd.io/etcd/%s %s\n", m, m, EtcdVersion)
		}
		gomod.WriteString(")\n")
		if err := goBuild(ctx, log, filepath.Dir(b.Etcd), gomod.String(), "go.etcd.io/etcd/server/v3", b.Etcd, ""); err != nil {
			return b, err
		}
	}
	var gomod strings.Builder
	fmt.Fprintf(&gomod, "module palisade.local/k8sbuild\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n", KubernetesVersion)
	for _, m := range stagingModules {
		fmt.Fprintf(&gomod, "\tk8s.io/%s => k8s.io/%s %s\n", m, m, StagingVersion)
	}
	gomod.WriteString(")\n")
	for pkg, out := range map[string]string{
		"k8s.io/kubernetes/cmd/kube-apiserver":          b.APIServer,
		"k8s.io/kubernetes/cmd/kube-controller-manager": b.ControllerManager,
	} {
		if _, err := os.Stat(out); err == nil {
			continue
		}
		if err := goBuild(ctx, log, filepath.Dir(out), gomod.String(), pkg, out, versionLDFlags); err != nil {
			return b, err
		}
	}
	return b, nil
}

// goBuild builds pkg from a throwaway module in dir/src into out.
// versionLDFlags stamp the Kubernetes version, as upstream's build does, so
// the API server reports v1.37.2 rather than v0.0.0-master.
var versionLDFlags = "-X k8s.io/component-base/version.gitVersion=" + KubernetesVersion +
	" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37" +
	" -X k8s.io/component-base/version.gitTreeState=clean"

func goBuild(ctx context.Context, log io.Writer, dir, gomod, pkg, out, ldflags string) error {
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return fmt.Errorf("devkube: prepare build dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte(gomod), 0o644); err != nil {
		return fmt.Errorf("devkube: write build module: %w", err)
	}
	fmt.Fprintf(log, "devkube: building %s (cold builds take minutes; cached in %s)\n", pkg, dir)
	tmp := out + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", tmp, pkg)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("devkube: building %s failed: %w (it needs the Go module proxy; "+
			"retry with `palisade dev kube build`, or delete %s to start clean)", pkg, err, src)
	}
	return os.Rename(tmp, out)
}

// lockCache takes an exclusive lock on the binary cache, waiting for
// another process's build to finish.
func lockCache(ctx context.Context, log io.Writer) (func(), error) {
	if err := os.MkdirAll(CacheDir(), 0o755); err != nil {
		return nil, fmt.Errorf("devkube: create cache dir: %w", err)
	}
	path := filepath.Join(CacheDir(), "build.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("devkube: open build lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		return func() { f.Close() }, nil
	}
	fmt.Fprintf(log, "devkube: another process is building the control plane (%s); waiting for it\n", path)
	for {
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("devkube: waiting for another build (%s): %w", path, ctx.Err())
		case <-time.After(time.Second):
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			return func() { f.Close() }, nil
		}
	}
}
