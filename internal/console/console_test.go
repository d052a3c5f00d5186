package console

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

func webDir(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "web")
}

// TestDistIsFresh fails when the committed build (dist/) does not come from
// the sources in web/, or was edited by hand: run `make console`.
func TestDistIsFresh(t *testing.T) {
	b, err := ReadBuild(Files())
	if err != nil {
		t.Fatal(err)
	}
	want, err := SourceHash(webDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if b.Sources != want {
		t.Errorf("internal/console/dist is stale: built from sources %s, web/ is now %s; run `make console` and commit dist/", b.Sources[:12], want[:12])
	}
	var have []string
	fs.WalkDir(Files(), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && p != "BUILD.json" {
			have = append(have, p)
		}
		return nil
	})
	var listed []string
	for f := range b.Files {
		if f != "BUILD.json" {
			listed = append(listed, f)
		}
	}
	sort.Strings(listed)
	if strings.Join(have, " ") != strings.Join(listed, " ") {
		t.Errorf("dist holds %v, the build made %v: run `make console`", have, listed)
	}
	for f, sum := range b.Files {
		raw, err := fs.ReadFile(Files(), f)
		if err != nil {
			continue
		}
		got := sha256.Sum256(raw)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("dist/%s differs from what the build wrote: run `make console`", f)
		}
	}
}

func get(t *testing.T, h http.Handler, path string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

// TestHandlerHeaders: content types, caching and the security headers of
// every built file, and 404 for anything else.
func TestHandlerHeaders(t *testing.T) {
	h := Handler()
	b, err := ReadBuild(Files())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
	paths := []string{"/"}
	for f := range b.Files {
		paths = append(paths, "/"+f)
	}
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			res := get(t, h, p)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d", res.StatusCode)
			}
			ext := filepath.Ext(p)
			if p == "/" {
				ext = ".html"
			}
			if ct := res.Header.Get("Content-Type"); ct != want[ext] {
				t.Errorf("Content-Type %q, want %q", ct, want[ext])
			}
			cc := res.Header.Get("Cache-Control")
			if ext == ".html" && cc != "no-cache" {
				t.Errorf("Cache-Control %q: index.html must be revalidated", cc)
			}
			if ext != ".html" && !strings.Contains(cc, "immutable") {
				t.Errorf("Cache-Control %q: a content-hashed bundle should be immutable", cc)
			}
			csp := res.Header.Get("Content-Security-Policy")
			for _, d := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, d) {
					t.Errorf("CSP %q lacks %q", csp, d)
				}
			}
			if strings.Contains(csp, "http") || strings.Contains(csp, "*") || strings.Contains(csp, "unsafe") {
				t.Errorf("CSP %q allows an outside origin or unsafe code", csp)
			}
			if res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no X-Content-Type-Options: nosniff")
			}
		})
	}
	t.Run("index references only built files", func(t *testing.T) {
		body, _ := io.ReadAll(get(t, h, "/").Body)
		for _, ref := range []string{".js\"", ".css\""} {
			if !bytes.Contains(body, []byte(ref)) {
				t.Errorf("index.html has no %s reference", ref)
			}
		}
		if bytes.Contains(body, []byte("http://")) || bytes.Contains(body, []byte("https://")) {
			t.Error("index.html names an outside URL")
		}
	})
	for _, p := range []string{"/nope.js", "/BUILD.json", "/../console.go", "/app.js"} {
		t.Run("404 "+p, func(t *testing.T) {
			if res := get(t, h, p); res.StatusCode != http.StatusNotFound {
				t.Errorf("status %d, want 404", res.StatusCode)
			}
		})
	}
	t.Run("gzip", func(t *testing.T) {
		var js string
		for f := range b.Files {
			if strings.HasSuffix(f, ".js") && strings.HasPrefix(f, "app-") {
				js = f
			}
		}
		res := get(t, h, "/"+js, "Accept-Encoding", "gzip, deflate")
		if res.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("Content-Encoding %q, want gzip", res.Header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(zr)
		raw, _ := fs.ReadFile(Files(), js)
		if !bytes.Equal(got, raw) {
			t.Error("gzip body differs from the file")
		}
	})
	t.Run("conditional", func(t *testing.T) {
		res := get(t, h, "/")
		if res2 := get(t, h, "/", "If-None-Match", res.Header.Get("ETag")); res2.StatusCode != http.StatusNotModified {
			t.Errorf("If-None-Match: status %d, want 304", res2.StatusCode)
		}
	})
}

// TestBundleBudget: the whole console (index.html, the app, its styles and
// the lazily loaded map chunk) is at most 300 KB gzipped (issue 12).
func TestBundleBudget(t *testing.T) {
	b, err := ReadBuild(Files())
	if err != nil {
		t.Fatal(err)
	}
	var total, first int
	for f := range b.Files {
		raw, _ := fs.ReadFile(Files(), f)
		var z bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		zw.Write(raw)
		zw.Close()
		total += z.Len()
		if !strings.HasPrefix(f, "cy-") {
			first += z.Len()
		}
		t.Logf("%-24s %7d bytes, %6d gzipped", f, len(raw), z.Len())
	}
	t.Logf("first load %d KB gzipped, everything %d KB", first/1000, total/1000)
	if total > 300_000 {
		t.Errorf("the console is %d bytes gzipped, over the 300 KB budget", total)
	}
}
