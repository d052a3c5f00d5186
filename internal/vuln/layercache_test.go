package vuln

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/palisade-dev/palisade/internal/vuln/image"
	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
)

// bigLayer is an Alpine layer whose apk database carries a package with a
// long description, so its summary is about size bytes.
func bigLayer(t *testing.T, name string, size int) v1.Layer {
	ti := buildImages(t)
	pad := fmt.Sprintf("P:%s\nV:1.0-r0\nA:x86_64\nT:%s\n\n", name, strings.Repeat("x", size))
	return vulntest.Layer(t,
		vulntest.File{Path: "etc/os-release", Data: ti.alpineRel},
		vulntest.File{Path: "lib/apk/db/installed", Data: ti.apkDB + pad},
	)
}

func layerDigestOf(t *testing.T, l v1.Layer) string {
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func cached(svc *Service, digest string) bool {
	_, err := os.Stat(svc.layers.path(digest))
	svc.layers.mu.Lock()
	defer svc.layers.mu.Unlock()
	return err == nil && svc.layers.entries[digest] != nil
}

// TestLayerCacheCap: the layer cache stays within --scan-cache-max-bytes
// (Options.CacheMaxBytes) by evicting the least recently used layers; a
// layer a running scan uses is never evicted, even when that scan's layers
// alone exceed the cap (the cache shrinks back when it ends); the cap and
// the use order hold across a restart; Status reports the cache.
func TestLayerCacheCap(t *testing.T) {
	const layerSize = 100_000
	reg := vulntest.Registry(t, "", "")
	var refs []string
	var digests []string
	for i := range 5 {
		l := bigLayer(t, fmt.Sprintf("pad%d", i), layerSize)
		ref := fmt.Sprintf("%s/lab/cache%d:1", reg, i)
		vulntest.Push(t, vulntest.Image(t, l), ref, nil)
		refs, digests = append(refs, ref), append(digests, layerDigestOf(t, l))
	}
	dir := t.TempDir()
	const maxBytes = 350_000 // three layers
	svc, err := Open(dir, Options{CacheMaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	scan := func(svc *Service, ref string) {
		t.Helper()
		if _, err := svc.ScanSource(t.Context(), image.Source{Kind: image.KindRegistry, Ref: ref}); err != nil {
			t.Fatal(err)
		}
		if st := svc.layers.Stats(); st.Bytes > st.MaxBytes || st.Pinned != 0 {
			t.Fatalf("after scanning %s: %+v", ref, st)
		}
	}
	for _, r := range refs[:3] {
		scan(svc, r)
	}
	if st := svc.Status().LayerCache; st.Layers != 3 || st.Evictions != 0 || st.MaxBytes != maxBytes || st.Bytes < 3*layerSize {
		t.Fatalf("three layers under the cap: %+v", st)
	}
	scan(svc, refs[0]) // layer 0 used again: now layer 1 is the least recently used
	scan(svc, refs[3])
	if cached(svc, digests[1]) || !cached(svc, digests[0]) || !cached(svc, digests[2]) || !cached(svc, digests[3]) {
		t.Errorf("after a fourth layer, the least recently used (1) should be gone and 0, 2, 3 kept")
	}

	// A scan whose own layers exceed the cap keeps them while it runs.
	big := []v1.Layer{bigLayer(t, "big-a", 200_000), bigLayer(t, "big-b", 200_000)}
	vulntest.Push(t, vulntest.Image(t, big...), reg+"/lab/big:1", nil)
	var during LayerCacheStats
	var both bool
	afterLoad = func(l *image.Loaded) {
		// Another scan stores a layer meanwhile: only unpinned ones may go.
		svc.layers.PutLayer("sha256:"+strings.Repeat("ab", 32), &image.Layer{Entries: []image.Entry{{Path: "x", Data: []byte(strings.Repeat("y", 50_000))}}})
		during = svc.layers.Stats()
		both = cached(svc, layerDigestOf(t, big[0])) && cached(svc, layerDigestOf(t, big[1]))
	}
	defer func() { afterLoad = func(*image.Loaded) {} }()
	scan(svc, reg+"/lab/big:1")
	afterLoad = func(*image.Loaded) {}
	if !both || during.Pinned != 2 || during.Bytes <= maxBytes {
		t.Errorf("during a scan larger than the cap: both layers kept %v, stats %+v (want 2 pinned, over the cap)", both, during)
	}
	if st := svc.Status().LayerCache; st.Evictions == 0 || st.Bytes > maxBytes {
		t.Errorf("after it: %+v", st)
	}
	scan(svc, refs[3]) // evicted meanwhile: read and cached again
	svc.Close()

	// Restart with a smaller cap: evicted down at once, oldest use first
	// (use times are the files' modification times).
	// Every layer last used an hour ago but layer 3, used now.
	cacheDir := filepath.Join(dir, LayersDir, strings.TrimSuffix(layerFormat, ":"))
	files, err := os.ReadDir(cacheDir)
	if err != nil || len(files) < 2 {
		t.Fatalf("cache directory %s: %d files, %v", cacheDir, len(files), err)
	}
	for _, f := range files {
		at := time.Now().Add(-time.Hour)
		if f.Name() == "sha256-"+strings.TrimPrefix(digests[3], "sha256:") {
			at = time.Now()
		}
		if err := os.Chtimes(filepath.Join(cacheDir, f.Name()), at, at); err != nil {
			t.Fatal(err)
		}
	}
	svc, err = Open(dir, Options{CacheMaxBytes: 150_000})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if st := svc.Status().LayerCache; st.Bytes > 150_000 || st.Layers != 1 || !cached(svc, digests[3]) {
		t.Errorf("after a restart with a smaller cap: %+v; want only the most recently used layer (3)", st)
	}
}
