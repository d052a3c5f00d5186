// Package console serves Palisade's web console: the static files built from
// web/ (TypeScript + Preact, bundled by esbuild; see web/build.mjs) and
// embedded in the binary, so `palisade server` serves it at / with no file
// on disk and nothing fetched from outside.
//
// The console is a client of the public REST API only: these files are
// served without authentication, and every API call the console makes
// carries the user's token (kept in the browser's sessionStorage).
//
// dist/ is committed so `go build ./...` needs no Node. dist/BUILD.json
// records a hash of the sources it was built from; TestDistIsFresh fails
// when web/ changed without `make console`.
package console

import (
	"bytes"
	"compress/gzip"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
)

//go:embed dist
var dist embed.FS

// Files is the built console (index.html, hashed bundles, BUILD.json).
func Files() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // the embed directive guarantees dist exists
	}
	return sub
}

// Build is dist/BUILD.json: what the build script produced and from what.
type Build struct {
	// Sources is the hash of web/'s sources (see SourceHash).
	Sources string `json:"sources"`
	// Files maps each built file to the SHA-256 of its content.
	Files map[string]string `json:"files"`
}

// ReadBuild reads dist/BUILD.json.
func ReadBuild(files fs.FS) (Build, error) {
	var b Build
	raw, err := fs.ReadFile(files, "BUILD.json")
	if err != nil {
		return b, fmt.Errorf("console: %w (run `make console`)", err)
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return b, fmt.Errorf("console: BUILD.json: %w", err)
	}
	return b, nil
}

// CSP forbids every origin but the server's own: no CDN, font, script,
// frame or connection elsewhere. Styles set through the CSSOM (as Preact,
// uPlot and Cytoscape do) are not inline styles and need no exception.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Handler serves the console. index.html (and /) must be revalidated on
// every load so a new build is picked up at once; the bundles carry a hash
// of their content in their name and are cached for a year. Unknown paths
// are 404: the console routes with the URL fragment (/#/flows/...), so the
// server never needs to guess.
func Handler() http.Handler { return handler(Files()) }

func handler(files fs.FS) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name == "" {
			name = "index.html"
		}
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if name == "BUILD.json" || strings.HasPrefix(name, ".") {
			http.NotFound(w, r)
			return
		}
		body, err := fs.ReadFile(files, name)
		if err != nil {
			h.Set("Cache-Control", "no-store")
			http.NotFound(w, r)
			return
		}
		ctype := mime.TypeByExtension(path.Ext(name))
		switch path.Ext(name) {
		case ".js", ".mjs":
			ctype = "text/javascript; charset=utf-8"
		case ".css":
			ctype = "text/css; charset=utf-8"
		case ".html":
			ctype = "text/html; charset=utf-8"
		case ".svg":
			ctype = "image/svg+xml"
		}
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		h.Set("Content-Type", ctype)
		if hashed(name) {
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		// Content-hashed names make the name itself a strong validator.
		h.Set("ETag", `"`+etag(body)+`"`)
		if match := r.Header.Get("If-None-Match"); match != "" && match == h.Get("ETag") {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Add("Vary", "Accept-Encoding")
		if gz := gzipped(name, body); gz != nil && acceptsGzip(r) {
			h.Set("Content-Encoding", "gzip")
			body = gz
		}
		h.Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			w.Write(body) //nolint:errcheck // the client went away
		}
	})
}

// hashed reports whether a file name carries its content hash
// (esbuild's "[name]-[hash]": app-4F2K7Q3M.js).
func hashed(name string) bool {
	base := strings.TrimSuffix(path.Base(name), path.Ext(name))
	i := strings.LastIndexByte(base, '-')
	if i < 0 || len(base)-i-1 != 8 {
		return false
	}
	for _, c := range base[i+1:] {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// gzCache holds compressed copies of the text files, made on first request.
var gzCache sync.Map // name → []byte (nil: not worth compressing)

func gzipped(name string, body []byte) []byte {
	if v, ok := gzCache.Load(name); ok {
		return v.([]byte)
	}
	var out []byte
	switch path.Ext(name) {
	case ".js", ".css", ".html", ".svg", ".json":
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		zw.Write(body) //nolint:errcheck // writes to memory
		zw.Close()     //nolint:errcheck // writes to memory
		if b.Len() < len(body) {
			out = b.Bytes()
		}
	}
	gzCache.Store(name, out)
	return out
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(q, " ", "") != "q=0" {
			return true
		}
	}
	return false
}
