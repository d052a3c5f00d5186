package vuln

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/vuln/image"
	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
)

// secretText is what forbidden services answer; it must never appear in
// anything the scanner stores or serves.
const secretText = "REMOTE-SECRET-7f3a"

// trap listens on addr (127.0.0.1:0 by default) and counts connections,
// answering each with secretText as an internal service would.
func trap(t *testing.T, addr string) (string, *atomic.Int64) {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			fmt.Fprintf(c, "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"errors\":[{\"code\":\"%s\",\"message\":\"%s\"}]}", secretText, secretText)
			c.Close()
		}
	}()
	return ln.Addr().String(), &n
}

// wrappedRegistry serves an in-process registry behind wrap on loopback.
func wrappedRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(wrap(registry.New(registry.Logger(log.New(io.Discard, "", 0)))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// scanPod observes one pod naming ref and waits for the scan queue.
func scanPod(t *testing.T, svc *Service, name, ref string) {
	t.Helper()
	svc.Observe([]inventory.Workload{pod(name, ref, "", nil, "")})
	wait(t, svc)
}

// served is everything the API would serve about images and registries.
func served(t *testing.T, svc *Service) string {
	t.Helper()
	var parts []any
	parts = append(parts, svc.Registries(), svc.Images(), svc.Vulnerabilities(nil))
	for _, im := range svc.Images() {
		if r, ok := svc.Image(im.Image); ok {
			parts = append(parts, r)
		}
	}
	b, err := json.Marshal(parts)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRegistryAllowList: with no allow-list nothing is pulled (images are
// listed as not allowed); with one, only its registry is contacted.
func TestRegistryAllowList(t *testing.T) {
	ti := buildImages(t)
	var hits atomic.Int64
	reg := wrappedRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			h.ServeHTTP(w, r)
		})
	})
	vulntest.Push(t, ti.alpine, reg+"/lab/alpine:1", nil)
	hits.Store(0)

	svc, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	scanPod(t, svc, "a", reg+"/lab/alpine:1")
	if n := hits.Load(); n != 0 {
		t.Errorf("no allow-list: the registry got %d requests", n)
	}
	ims := svc.Images()
	if len(ims) != 1 || ims[0].Status != "not-allowed" || ims[0].Scanned {
		t.Errorf("images = %+v, want one not-allowed", ims)
	}
	if regs := svc.Registries(); len(regs) != 1 || regs[0].Allowed {
		t.Errorf("registries = %+v", regs)
	}

	other, err := Open(t.TempDir(), Options{Registries: []string{reg}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	scanPod(t, other, "a", reg+"/lab/alpine:1")
	if ims := other.Images(); len(ims) != 1 || ims[0].Status != "scanned" {
		t.Errorf("allowed registry: images = %+v", ims)
	}
	if hits.Load() == 0 {
		t.Error("allowed registry never contacted")
	}
}

// TestRedirectAndRealmRefused: an allowed registry redirecting a blob to a
// loopback port that is not on the allow-list, or naming such a port as its
// token realm, gets the scan refused without any connection there, and
// nothing of the trap's answer is stored.
func TestRedirectAndRealmRefused(t *testing.T) {
	ti := buildImages(t)
	trapAddr, conns := trap(t, "")
	var pushing atomic.Bool
	pushing.Store(true)
	redirecting := wrappedRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !pushing.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				http.Redirect(w, r, "http://"+trapAddr+"/blob", http.StatusTemporaryRedirect)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	// One realm is a literal loopback address, the other a name resolving to one.
	_, trapPort, _ := net.SplitHostPort(trapAddr)
	realmRegistry := func(host string) string {
		return wrappedRegistry(t, func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !pushing.Load() && r.Header.Get("Authorization") == "" {
					w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+host+`/token",service="registry"`)
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				h.ServeHTTP(w, r)
			})
		})
	}
	realmLit, realmName := realmRegistry(trapAddr), realmRegistry("localhost:"+trapPort)
	vulntest.Push(t, ti.alpine, redirecting+"/lab/alpine:1", nil)
	vulntest.Push(t, ti.alpine, realmLit+"/lab/alpine:1", nil)
	vulntest.Push(t, ti.alpine, realmName+"/lab/alpine:1", nil)
	pushing.Store(false)

	svc, err := Open(t.TempDir(), Options{Registries: []string{redirecting, realmLit, realmName}})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	scanPod(t, svc, "redirect", redirecting+"/lab/alpine:1")
	scanPod(t, svc, "realm-literal", realmLit+"/lab/alpine:1")
	scanPod(t, svc, "realm-name", realmName+"/lab/alpine:1")
	if n := conns.Load(); n != 0 {
		t.Errorf("the forbidden address got %d connections", n)
	}
	for _, im := range svc.Images() {
		if im.Status != "failed" || !strings.Contains(im.Error, "refused by the scanner's registry allow-list") {
			t.Errorf("%s: status %s, error %q; want a refusal", im.Image, im.Status, im.Error)
		} else {
			t.Logf("%s: %s", im.Image, im.Error)
		}
	}
	if out := served(t, svc); strings.Contains(out, secretText) {
		t.Errorf("served data contains the remote text: %s", out)
	}
}

// TestRemoteBodyNotStored: registry error answers (a text body, a JSON
// error with a message) are reduced to the status and standard codes.
func TestRemoteBodyNotStored(t *testing.T) {
	reg := wrappedRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.Contains(r.URL.Path, "/text/"):
				http.Error(w, secretText+" internal stack trace", http.StatusInternalServerError)
			case strings.Contains(r.URL.Path, "/json/"):
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprintf(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"%s"},{"code":"%s","message":"x"}]}`, secretText, secretText)
			case strings.Contains(r.URL.Path, "/garbage/"):
				w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
				fmt.Fprint(w, secretText)
			default:
				h.ServeHTTP(w, r)
			}
		})
	})
	svc, err := Open(t.TempDir(), Options{Registries: []string{reg}})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	for _, repo := range []string{"text", "json", "garbage"} {
		scanPod(t, svc, repo, reg+"/"+repo+"/app:1")
	}
	byImage := map[string]string{}
	for _, im := range svc.Images() {
		byImage[strings.Split(strings.TrimPrefix(im.Image, reg+"/"), "/")[0]] = im.Error
	}
	for repo, want := range map[string]string{
		"text":    "the registry answered HTTP 500",
		"json":    "the registry answered HTTP 404 (MANIFEST_UNKNOWN)",
		"garbage": "the registry's answer could not be used",
	} {
		if !strings.Contains(byImage[repo], want) {
			t.Errorf("%s: error %q, want %q", repo, byImage[repo], want)
		}
	}
	if out := served(t, svc); strings.Contains(out, secretText) {
		t.Errorf("served data contains the remote text: %s", out)
	}
}

// TestLayerPoisoning: a registry serving, under a layer's digest, bytes
// that do not hash to it leaves nothing cached under that digest; the
// honest layer is cached once served.
func TestLayerPoisoning(t *testing.T) {
	ti := buildImages(t)
	layers, err := ti.alpine.Layers()
	if err != nil {
		t.Fatal(err)
	}
	digest, _ := layers[0].Digest()
	// A well-formed layer with other content (a different apk database).
	poison, err := vulntest.Layer(t, vulntest.File{Path: "lib/apk/db/installed", Data: "P:evil\nV:1-r0\n\n"}).Compressed()
	if err != nil {
		t.Fatal(err)
	}
	poisonBytes, err := io.ReadAll(poison)
	if err != nil {
		t.Fatal(err)
	}
	var poisoned atomic.Bool
	poisoned.Store(true)
	var pushing atomic.Bool
	pushing.Store(true)
	reg := wrappedRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !pushing.Load() && poisoned.Load() && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+digest.String()) {
				w.Header().Set("Content-Length", fmt.Sprint(len(poisonBytes)))
				w.Write(poisonBytes)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	vulntest.Push(t, ti.alpine, reg+"/lab/alpine:1", nil)
	pushing.Store(false)
	svc, err := Open(t.TempDir(), Options{Registries: []string{reg}})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	_, err = svc.ScanSource(t.Context(), image.Source{Kind: image.KindRegistry, Ref: reg + "/lab/alpine:1"})
	if err == nil {
		t.Fatal("poisoned layer scanned without error")
	}
	if _, ok := svc.layers.GetLayer(digest.String()); ok {
		t.Fatalf("a summary is cached under %s after a poisoned read (%v)", digest, err)
	}
	t.Logf("poisoned pull: %v", err)
	poisoned.Store(false)
	if _, err := svc.ScanSource(t.Context(), image.Source{Kind: image.KindRegistry, Ref: reg + "/lab/alpine:1"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := svc.layers.GetLayer(digest.String()); !ok {
		t.Error("the honest layer was not cached")
	}
}

// TestScanBounds: the layer-count cap, the per-image memory budget, the
// per-scan deadline and a parser panic each fail their scan with a clear
// error, and the service goes on scanning.
func TestScanBounds(t *testing.T) {
	ti := buildImages(t)
	var stall atomic.Bool
	var pushing atomic.Bool
	pushing.Store(true)
	reg := wrappedRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !pushing.Load() && stall.Load() && strings.Contains(r.URL.Path, "/blobs/") {
				select {
				case <-r.Context().Done():
				case <-time.After(30 * time.Second):
				}
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	vulntest.Push(t, ti.whiteout, reg+"/lab/whiteout:1", nil) // 3 layers
	vulntest.Push(t, ti.debian, reg+"/lab/debian:1", nil)
	vulntest.Push(t, ti.alpine, reg+"/lab/alpine:1", nil)
	pushing.Store(false)
	src := func(repo string) image.Source {
		return image.Source{Kind: image.KindRegistry, Ref: reg + "/lab/" + repo + ":1"}
	}

	lim := image.DefaultLimits
	lim.MaxLayers = 2
	lim.MaxImageMemory = 64 << 10 // the Debian status file alone is larger
	svc, err := Open(t.TempDir(), Options{Registries: []string{reg}, Limits: lim, ScanTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if _, err := svc.ScanSource(t.Context(), src("whiteout")); !errors.Is(err, image.ErrLimit) || !strings.Contains(err.Error(), "3 layers") {
		t.Errorf("3-layer image with a cap of 2: %v", err)
	}
	if _, err := svc.ScanSource(t.Context(), src("debian")); !errors.Is(err, image.ErrLimit) || !strings.Contains(err.Error(), "memory budget") {
		t.Errorf("Debian image over a 64 KiB budget: %v", err)
	}
	stall.Store(true)
	start := time.Now()
	_, err = svc.ScanSource(t.Context(), src("alpine"))
	if err == nil || !strings.Contains(err.Error(), "did not finish within 1s") || time.Since(start) > 20*time.Second {
		t.Errorf("stalled registry: %v after %v", err, time.Since(start))
	}
	stall.Store(false)

	afterLoad = func(*image.Loaded) { panic("parser bug") }
	_, err = svc.ScanSource(t.Context(), src("alpine"))
	afterLoad = func(*image.Loaded) {}
	if err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Errorf("panicking parser: %v", err)
	}
	if rep, err := svc.ScanSource(t.Context(), src("alpine")); err != nil || len(rep.Packages) == 0 {
		t.Errorf("the service no longer scans after the failures: %v", err)
	}
}

// TestImportDir: POST /api/v1/vulndb/import's reader takes paths under the
// import directory only; a missing path, one outside (relative climb,
// absolute, a symbolic link out) and an unreadable one get the same error.
func TestImportDir(t *testing.T) {
	base := t.TempDir()
	importDir := filepath.Join(base, "import")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(importDir, "osv"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(filepath.Join("testdata", "osv", "cve", "CVE-2023-45853.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(importDir, "osv"), outside} {
		if err := os.WriteFile(filepath.Join(d, "CVE-2023-45853.json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(importDir, "link-out")); err != nil {
		t.Fatal(err)
	}
	svc, err := Open(filepath.Join(base, "data"), Options{ImportDir: importDir})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if st, err := svc.ImportDBUnder(t.Context(), "osv", nil); err != nil || st.Added != 1 {
		t.Fatalf("import of osv under the directory: %+v, %v", st, err)
	}
	if _, err := svc.ImportDBUnder(t.Context(), filepath.Join(importDir, "osv"), nil); err != nil {
		t.Errorf("absolute path inside: %v", err)
	}
	msg := func(p string) string {
		_, err := svc.ImportDBUnder(t.Context(), p, nil)
		if err == nil {
			t.Fatalf("%s imported", p)
		}
		return strings.ReplaceAll(err.Error(), fmt.Sprintf("%q", p), "PATH")
	}
	want := msg("missing")
	for _, p := range []string{"../outside", outside, "link-out", "link-out/CVE-2023-45853.json", "/etc", "osv/../../outside", "/proc/self/environ"} {
		if got := msg(p); got != want {
			t.Errorf("%s: error %q differs from the missing path's %q", p, got, want)
		}
	}
	disabled, err := Open(filepath.Join(base, "data2"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer disabled.Close()
	if _, err := disabled.ImportDBUnder(t.Context(), "osv", nil); !errors.Is(err, ErrImportDisabled) {
		t.Errorf("no import directory: %v", err)
	}
}
