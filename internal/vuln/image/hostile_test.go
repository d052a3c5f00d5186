package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
)

func keepStatus(p string) bool { return p == "var/lib/dpkg/status" }

// rawHeader builds one 512-byte ustar header block by hand, for entries
// archive/tar refuses to write (PAX sparse headers).
func rawHeader(name string, typeflag byte, size int64) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], fmt.Sprintf("%011o\x00", 0))
	b[156] = typeflag
	copy(b[257:263], "ustar\x00")
	copy(b[263:265], "00")
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func pad(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

func paxRecord(k, v string) string {
	rec := " " + k + "=" + v + "\n"
	n := len(rec) + 1
	for len(fmt.Sprint(n))+len(rec) != n {
		n++
	}
	return fmt.Sprint(n) + rec
}

// sparseTar is a PAX 1.0 sparse entry of realSize bytes at name that stores
// a single data byte: a few kilobytes on the wire.
func sparseTar(name string, realSize int64) []byte {
	pax := paxRecord("GNU.sparse.major", "1") + paxRecord("GNU.sparse.minor", "0") +
		paxRecord("GNU.sparse.name", name) + paxRecord("GNU.sparse.realsize", fmt.Sprint(realSize))
	var out []byte
	out = append(out, rawHeader("PaxHeaders/sparse", 'x', int64(len(pax)))...)
	out = append(out, pad([]byte(pax))...)
	sparseMap := pad([]byte(fmt.Sprintf("1\n%d\n1\n", realSize-1)))
	data := append(sparseMap, pad([]byte{'x'})...)
	out = append(out, rawHeader("GNUSparseFile.0/sparse", '0', int64(len(sparseMap)+1))...)
	out = append(out, data...)
	return append(out, make([]byte, 1024)...)
}

func tarOf(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		data := ""
		if h.Typeflag == tar.TypeReg {
			data = strings.Repeat("x", int(h.Size))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, data)
	}
	tw.Close()
	return buf.Bytes()
}

// assertNothingWritten checks that a directory next to the scratch
// directory stayed empty: the extractor writes nowhere else.
func assertNothingWritten(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Errorf("%s: extractor wrote %d entries", d, len(entries))
		}
	}
}

func TestHostilePathTraversal(t *testing.T) {
	scratch, outside := t.TempDir(), t.TempDir()
	x := &Extractor{Keep: keepStatus, ScratchDir: scratch}
	for _, h := range []*tar.Header{
		{Name: "../../etc/evil", Typeflag: tar.TypeReg, Size: 4, Mode: 0o644},
		{Name: "ok/../../../" + filepath.Base(outside) + "/evil", Typeflag: tar.TypeReg, Size: 4, Mode: 0o644},
		{Name: "link", Typeflag: tar.TypeLink, Linkname: "../../etc/shadow"},
	} {
		_, err := x.ReadLayer(bytes.NewReader(tarOf(t, h)), nil, "layer 1 (sha256:test)")
		if err == nil || !strings.Contains(err.Error(), "escapes the image root") || !strings.Contains(err.Error(), "layer 1 (sha256:test)") {
			t.Errorf("%q: err = %v, want a path traversal error naming the layer", h.Name, err)
		}
	}
	assertNothingWritten(t, scratch, outside)
}

func TestHostileSymlinksStayInRoot(t *testing.T) {
	layer := &Layer{Entries: []Entry{
		{Path: "etc", Type: TypeDir},
		{Path: "etc/passwd", Type: TypeFile, Data: []byte("root:x:0:0\n"), Size: 11},
		{Path: "abs", Type: TypeSymlink, Link: "/../../../../etc/passwd"},
		{Path: "rel", Type: TypeSymlink, Link: "../../../../../etc/passwd"},
		{Path: "host", Type: TypeSymlink, Link: "/proc/self/environ"},
		{Path: "loop1", Type: TypeSymlink, Link: "loop2"},
		{Path: "loop2", Type: TypeSymlink, Link: "/loop1"},
	}}
	fsys := Flatten([]*Layer{layer})
	for _, p := range []string{"abs", "rel"} {
		data, err := fsys.ReadFile(p)
		if err != nil || string(data) != "root:x:0:0\n" {
			t.Errorf("%s: %q, %v: want the image's own etc/passwd", p, data, err)
		}
	}
	if _, err := fsys.ReadFile("host"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("host: err = %v, want not found inside the image", err)
	}
	if _, err := fsys.ReadFile("loop1"); err == nil || !strings.Contains(err.Error(), "symlink loop") {
		t.Errorf("loop1: err = %v, want a symlink loop error", err)
	}
}

// TestHostileDirSymlinkToHost: in a dir: root filesystem an absolute symlink
// at a package database path must not read the host's file.
func TestHostileDirSymlinkToHost(t *testing.T) {
	root, host := t.TempDir(), t.TempDir()
	hostFile := filepath.Join(host, "status")
	os.WriteFile(hostFile, []byte("Package: host-secret\nStatus: install ok installed\nVersion: 1\n"), 0o644)
	os.MkdirAll(filepath.Join(root, "var/lib/dpkg"), 0o755)
	if err := os.Symlink(hostFile, filepath.Join(root, "var/lib/dpkg/status")); err != nil {
		t.Fatal(err)
	}
	x := &Extractor{Keep: keepStatus, ScratchDir: t.TempDir()}
	l, err := x.ReadDir(t.Context(), root)
	if err != nil {
		t.Fatal(err)
	}
	fsys := Flatten([]*Layer{l})
	if data, err := fsys.ReadFile("var/lib/dpkg/status"); err == nil || bytes.Contains(data, []byte("host-secret")) {
		t.Fatalf("read %q through a symlink to the host", data)
	}
	if e, ok := fsys.Lstat("var/lib/dpkg/status"); !ok || e.Type != TypeSymlink || e.Link != hostFile {
		t.Errorf("Lstat = %+v, %v", e, ok)
	}
}

func gzipped(t *testing.T, r io.Reader) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if _, err := io.Copy(zw, r); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}

// TestHostileDecompressionBomb: 1 GiB of zeros in ~1 MiB of gzip stops at
// the ratio bound after RatioAfter bytes, long before the end.
func TestHostileDecompressionBomb(t *testing.T) {
	const size = 1 << 30
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		tw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Size: size, Mode: 0o644})
		io.CopyN(tw, zeroReader{}, size)
		tw.Close()
		pw.Close()
	}()
	bomb := gzipped(t, pr)
	start := time.Now()
	counted := &countingReader{r: bytes.NewReader(bomb)}
	r, closeFn, compressed, err := Decompress(counted)
	if err != nil || !compressed {
		t.Fatal(err, compressed)
	}
	defer closeFn()
	x := &Extractor{Limits: Limits{RatioAfter: 64 << 20, MaxRatio: 100}}
	_, err = x.ReadLayer(r, counted, "layer 3 (sha256:bomb)")
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "decompression bomb") || !strings.Contains(err.Error(), "layer 3 (sha256:bomb)") {
		t.Fatalf("err = %v, want a decompression bomb error naming the layer", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("stopping the bomb took %v", d)
	}
	t.Logf("%d compressed bytes; stopped: %v", len(bomb), err)
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestHostileSparseEntry: a 10 GiB sparse entry is skipped in constant work
// unless it sits at a package database path, where it is a clear error.
func TestHostileSparseEntry(t *testing.T) {
	const tenGB = 10 << 30
	start := time.Now()
	x := &Extractor{Keep: keepStatus, ScratchDir: t.TempDir(), Probe: func(string, io.ReaderAt, int64) ([]byte, error) { return nil, nil }}
	l, err := x.ReadLayer(bytes.NewReader(sparseTar("usr/share/big.img", tenGB)), nil, "layer 1")
	if err != nil {
		t.Fatalf("an unselected sparse file: %v", err)
	}
	if len(l.Entries) != 1 || l.Entries[0].Size != tenGB || l.Entries[0].Path != "usr/share/big.img" {
		t.Fatalf("entries = %+v", l.Entries)
	}
	_, err = x.ReadLayer(bytes.NewReader(sparseTar("var/lib/dpkg/status", tenGB)), nil, "layer 2")
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "var/lib/dpkg/status is 10737418240 bytes") || !strings.Contains(err.Error(), "layer 2") {
		t.Fatalf("err = %v, want a size limit error naming the file and layer", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("sparse entries took %v", d)
	}
}

func TestHostileLimits(t *testing.T) {
	var hdrs []*tar.Header
	for i := 0; i < 50; i++ {
		hdrs = append(hdrs, &tar.Header{Name: fmt.Sprintf("f%d", i), Typeflag: tar.TypeReg, Mode: 0o644})
	}
	x := &Extractor{Limits: Limits{MaxEntries: 10}}
	if _, err := x.ReadLayer(bytes.NewReader(tarOf(t, hdrs...)), nil, "layer 1"); !errors.Is(err, ErrLimit) {
		t.Errorf("entries: err = %v", err)
	}
	x = &Extractor{Limits: Limits{MaxLayerBytes: 1 << 10}}
	big := tarOf(t, &tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: 1 << 20, Mode: 0o644})
	if _, err := x.ReadLayer(bytes.NewReader(big), nil, "layer 1"); !errors.Is(err, ErrLimit) {
		t.Errorf("layer bytes: err = %v", err)
	}
	// A truncated archive is an error naming the layer, not a panic.
	if _, err := (&Extractor{}).ReadLayer(bytes.NewReader(big[:700]), nil, "layer 9"); err == nil || !strings.Contains(err.Error(), "layer 9") {
		t.Errorf("truncated: err = %v", err)
	}
}

// TestProbePanicContained: a parser panicking on a malformed executable
// becomes a warning.
func TestProbePanicContained(t *testing.T) {
	x := &Extractor{Probe: func(string, io.ReaderAt, int64) ([]byte, error) { panic("boom") }}
	data := tarOf(t, &tar.Header{Name: "bin/x", Typeflag: tar.TypeReg, Size: 8, Mode: 0o755})
	data = bytes.Replace(data, []byte("xxxxxxxx"), []byte("\x7fELFxxxx"), 1)
	l, err := x.ReadLayer(bytes.NewReader(data), nil, "layer 1")
	if err != nil || len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "boom") {
		t.Fatalf("layer = %+v, err = %v", l, err)
	}
}

// FuzzReadLayer: arbitrary bytes as a (possibly compressed) layer never
// panic, and every entry path stays inside the root.
func FuzzReadLayer(f *testing.F) {
	f.Add(sparseTar("var/lib/dpkg/status", 1<<20))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	var seed bytes.Buffer
	tw := tar.NewWriter(&seed)
	tw.WriteHeader(&tar.Header{Name: "var/lib/dpkg/status", Typeflag: tar.TypeReg, Size: 3, Mode: 0o644})
	tw.Write([]byte("a:b"))
	tw.WriteHeader(&tar.Header{Name: "a/.wh.b", Typeflag: tar.TypeReg})
	tw.WriteHeader(&tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/../x"})
	tw.Close()
	f.Add(seed.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		counted := &countingReader{r: bytes.NewReader(data)}
		r, closeFn, compressed, err := Decompress(counted)
		if err != nil {
			return
		}
		defer closeFn()
		if !compressed {
			counted = nil
		}
		x := &Extractor{Keep: keepStatus, Limits: Limits{MaxLayerBytes: 8 << 20, MaxKeepSize: 1 << 20}}
		l, err := x.ReadLayer(r, counted, "fuzz")
		if err != nil {
			return
		}
		fsys := Flatten([]*Layer{l})
		for _, e := range fsys.Entries() {
			if strings.HasPrefix(e.Path, "../") || e.Path == ".." || strings.HasPrefix(e.Path, "/") {
				t.Fatalf("entry %q escapes the root", e.Path)
			}
			fsys.ReadFile(e.Path)
		}
	})
}

// FuzzCleanPath: a cleaned path never escapes the root.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"../a", "/a/../../b", "a/./b/", "", ".", "..", "a/.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := CleanPath(s)
		if err == nil && (p == ".." || strings.HasPrefix(p, "../") || strings.HasPrefix(p, "/")) {
			t.Fatalf("CleanPath(%q) = %q", s, p)
		}
	})
}
