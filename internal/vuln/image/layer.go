// Package image turns container images and root filesystems into a flattened,
// read-only view of the files a package inventory needs, without extracting
// them to disk and without trusting the input: every layer is streamed once,
// entries are validated, whiteouts are honoured, symlinks resolve inside the
// image root, and the work per layer is bounded (bytes, decompression ratio,
// entry count, file sizes).
package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// EntryType is the kind of a layer entry.
type EntryType uint8

const (
	TypeFile EntryType = iota + 1
	TypeDir
	TypeSymlink
	TypeHardlink
	TypeOther    // devices, fifos: present but never read
	TypeWhiteout // removes Path (and what is below it) from lower layers
	TypeOpaque   // hides the lower layers' content of directory Path
)

// Entry is one file of a layer. Data is set for files the Extractor's Keep
// selected; Probe holds the Prober's result for executables.
type Entry struct {
	Path  string // clean, relative to the root, no leading slash
	Type  EntryType
	Mode  uint32 // permission bits
	Size  int64
	Link  string // symlink target as written, or clean hardlink target path
	Data  []byte
	Probe []byte
}

// Layer is the summary of one layer: its entries in archive order. It is
// what the layer cache stores, keyed by the layer's digest.
type Layer struct {
	Digest   string
	Entries  []Entry
	Warnings []string
}

// MemSize estimates the bytes a summary holds.
func (l *Layer) MemSize() int64 {
	n := int64(64)
	for i := range l.Entries {
		e := &l.Entries[i]
		n += 96 + int64(len(e.Path)+len(e.Link)+len(e.Data)+len(e.Probe))
	}
	for _, w := range l.Warnings {
		n += int64(len(w))
	}
	return n
}

// Limits bound the work and memory spent on one layer.
type Limits struct {
	MaxLayerBytes int64 // uncompressed bytes read from one layer
	MaxRatio      int64 // uncompressed:compressed ratio, checked once RatioAfter bytes were read
	RatioAfter    int64
	MaxEntries    int   // entries in one layer
	MaxKeepSize   int64 // one selected file (package databases, metadata)
	MaxKeepTotal  int64 // all selected files of a layer
	MaxProbeSize  int64 // one executable handed to the Prober
	MaxLayers     int   // layers in one image
	// MaxImageMemory bounds what one image's layer summaries hold in
	// memory together (kept file contents, probe results, entry metadata).
	MaxImageMemory int64
}

// DefaultLimits suit real images: multi-gigabyte layers pass, bombs do not.
var DefaultLimits = Limits{
	MaxLayerBytes: 16 << 30,
	MaxRatio:      200,
	RatioAfter:    256 << 20,
	MaxEntries:    1 << 20,
	MaxKeepSize:   64 << 20,
	MaxKeepTotal:  512 << 20,
	MaxProbeSize:  1 << 30,
	MaxLayers:     256,
	// A real image's package metadata is a few tens of megabytes.
	MaxImageMemory: 1 << 30,
}

// Extractor reads layers. Keep selects files whose content is kept; Probe
// is called on regular files that start with an ELF, PE or Mach-O magic, through an
// io.ReaderAt, and returns what should be remembered about them (nil for
// nothing). ScratchDir receives temporary copies of executables too large to
// probe in memory; nothing else is ever written.
type Extractor struct {
	Keep       func(path string) bool
	Probe      func(path string, r io.ReaderAt, size int64) ([]byte, error)
	Limits     Limits
	ScratchDir string
}

// maxInMemoryProbe is the size up to which executables are probed from memory.
const maxInMemoryProbe = 64 << 20

// execMagicLen bytes identify an executable to probe: ELF, PE (MZ) or
// Mach-O (32/64-bit, either byte order).
const execMagicLen = 4

func isExecutable(head []byte) bool {
	if len(head) < execMagicLen {
		return false
	}
	switch string(head[:4]) {
	case "\x7fELF", "\xfe\xed\xfa\xce", "\xfe\xed\xfa\xcf", "\xce\xfa\xed\xfe", "\xcf\xfa\xed\xfe":
		return true
	}
	return head[0] == 'M' && head[1] == 'Z'
}

// ErrLimit marks errors caused by a work bound; errors.Is works on them.
var ErrLimit = errors.New("limit exceeded")

// CleanPath validates and cleans a path from an archive: leading slashes
// are dropped (as tar does), and a path that climbs out of the root is an
// error rather than silently clamped, because only hostile archives do that.
func CleanPath(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("entry name %q contains a NUL byte", name)
	}
	p := strings.TrimLeft(name, "/")
	if p == "" || p == "." || p == "./" {
		return "", nil
	}
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("entry %q escapes the image root (path traversal)", name)
	}
	if c == "." {
		return "", nil
	}
	return c, nil
}

// countingReader counts bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// boundedReader fails once too much was decompressed or the ratio to the
// compressed input says it is a decompression bomb.
type boundedReader struct {
	r          io.Reader
	compressed *countingReader // nil for uncompressed input
	n          int64
	lim        Limits
	where      string
}

func (b *boundedReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.lim.MaxLayerBytes > 0 && b.n > b.lim.MaxLayerBytes {
		return n, fmt.Errorf("%s: more than %d uncompressed bytes: %w", b.where, b.lim.MaxLayerBytes, ErrLimit)
	}
	if b.compressed != nil && b.lim.MaxRatio > 0 && b.n > b.lim.RatioAfter {
		if c := max(b.compressed.n, 1); b.n/c > b.lim.MaxRatio {
			return n, fmt.Errorf("%s: decompression bomb: %d bytes expanded from %d compressed bytes (ratio above %d:1): %w",
				b.where, b.n, c, b.lim.MaxRatio, ErrLimit)
		}
	}
	return n, err
}

// ReadLayer reads one uncompressed layer tarball. where names the layer in
// errors (e.g. "layer 2 (sha256:…)"). compressed, when not nil, counts the
// compressed bytes behind r so the decompression ratio can be bounded.
func (x *Extractor) ReadLayer(r io.Reader, compressed *countingReader, where string) (*Layer, error) {
	lim := x.limits()
	br := &boundedReader{r: r, compressed: compressed, lim: lim, where: where}
	tr := tar.NewReader(br)
	layer := &Layer{}
	var keptTotal int64
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return layer, nil
		}
		if err != nil {
			if errors.Is(err, ErrLimit) {
				return nil, err
			}
			return nil, fmt.Errorf("%s: reading tar after %d entries: %w", where, len(layer.Entries), err)
		}
		if len(layer.Entries) >= lim.MaxEntries {
			return nil, fmt.Errorf("%s: more than %d entries: %w", where, lim.MaxEntries, ErrLimit)
		}
		p, err := CleanPath(hdr.Name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if p == "" {
			continue
		}
		e := Entry{Path: p, Mode: uint32(hdr.Mode & 0o7777), Size: hdr.Size}
		dir, base := path.Split(p)
		switch {
		case base == ".wh..wh..opq":
			e.Type, e.Path = TypeOpaque, strings.TrimSuffix(dir, "/")
		case strings.HasPrefix(base, ".wh."):
			e.Type, e.Path = TypeWhiteout, path.Join(dir, strings.TrimPrefix(base, ".wh."))
		default:
			switch hdr.Typeflag {
			case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
				e.Type = TypeFile
			case tar.TypeDir:
				e.Type = TypeDir
			case tar.TypeSymlink:
				e.Type, e.Link = TypeSymlink, hdr.Linkname
			case tar.TypeLink:
				target, err := CleanPath(hdr.Linkname)
				if err != nil {
					return nil, fmt.Errorf("%s: hard link %q: %w", where, hdr.Name, err)
				}
				e.Type, e.Link = TypeHardlink, target
			default:
				e.Type = TypeOther
			}
		}
		if e.Size < 0 {
			return nil, fmt.Errorf("%s: entry %q has a negative size", where, hdr.Name)
		}
		if e.Type == TypeFile {
			if err := x.readContent(tr, &e, &keptTotal, layer, where); err != nil {
				return nil, err
			}
		}
		layer.Entries = append(layer.Entries, e)
	}
}

func (x *Extractor) limits() Limits {
	lim, def := x.Limits, DefaultLimits
	orDefault(&lim.MaxLayerBytes, def.MaxLayerBytes)
	orDefault(&lim.MaxRatio, def.MaxRatio)
	orDefault(&lim.RatioAfter, def.RatioAfter)
	orDefault(&lim.MaxEntries, def.MaxEntries)
	orDefault(&lim.MaxKeepSize, def.MaxKeepSize)
	orDefault(&lim.MaxKeepTotal, def.MaxKeepTotal)
	orDefault(&lim.MaxProbeSize, def.MaxProbeSize)
	orDefault(&lim.MaxLayers, def.MaxLayers)
	orDefault(&lim.MaxImageMemory, def.MaxImageMemory)
	return lim
}

func orDefault[T int | int64](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// readContent keeps or probes a regular file's content as configured.
func (x *Extractor) readContent(r io.Reader, e *Entry, keptTotal *int64, layer *Layer, where string) error {
	lim := x.limits()
	if x.Keep != nil && x.Keep(e.Path) {
		if e.Size > lim.MaxKeepSize {
			return fmt.Errorf("%s: %s is %d bytes, above the %d byte limit for package metadata: %w", where, e.Path, e.Size, lim.MaxKeepSize, ErrLimit)
		}
		if *keptTotal+e.Size > lim.MaxKeepTotal {
			return fmt.Errorf("%s: package metadata above %d bytes in total at %s: %w", where, lim.MaxKeepTotal, e.Path, ErrLimit)
		}
		data := make([]byte, e.Size)
		if _, err := io.ReadFull(r, data); err != nil {
			return fmt.Errorf("%s: reading %s: %w", where, e.Path, err)
		}
		*keptTotal += e.Size
		e.Data = data
		return nil
	}
	if x.Probe == nil || e.Size < execMagicLen {
		return nil
	}
	br := bufio.NewReaderSize(r, 4096)
	head, err := br.Peek(execMagicLen)
	if err != nil {
		return fmt.Errorf("%s: reading %s: %w", where, e.Path, err)
	}
	if !isExecutable(head) {
		return nil
	}
	if !x.probeAllowed(e, layer, where) {
		return nil
	}
	var ra io.ReaderAt
	if e.Size <= maxInMemoryProbe {
		buf := make([]byte, e.Size)
		if _, err := io.ReadFull(br, buf); err != nil {
			return fmt.Errorf("%s: reading %s: %w", where, e.Path, err)
		}
		ra = bytes.NewReader(buf)
	} else {
		f, err := os.CreateTemp(x.ScratchDir, "probe-*")
		if err != nil {
			return fmt.Errorf("%s: scratch file for %s: %w", where, e.Path, err)
		}
		defer os.Remove(f.Name())
		defer f.Close()
		if _, err := io.CopyN(f, br, e.Size); err != nil {
			return fmt.Errorf("%s: reading %s: %w", where, e.Path, err)
		}
		ra = f
	}
	x.probe(e, ra, layer, where)
	return nil
}

// probeAllowed applies the executable size bound, leaving a warning.
func (x *Extractor) probeAllowed(e *Entry, layer *Layer, where string) bool {
	lim := x.limits()
	if e.Size > lim.MaxProbeSize {
		layer.Warnings = append(layer.Warnings, fmt.Sprintf("%s: %s: executable of %d bytes not inspected (limit %d)", where, e.Path, e.Size, lim.MaxProbeSize))
		return false
	}
	return true
}

// probe runs the Prober; its failures become warnings, never scan errors.
func (x *Extractor) probe(e *Entry, r io.ReaderAt, layer *Layer, where string) {
	res, err := safeProbe(x.Probe, e.Path, r, e.Size)
	if err != nil {
		layer.Warnings = append(layer.Warnings, fmt.Sprintf("%s: %s: %v", where, e.Path, err))
		return
	}
	e.Probe = res
}

// safeProbe turns a panic in a binary parser into an error: a hostile
// executable must not take the scanner down.
func safeProbe(probe func(string, io.ReaderAt, int64) ([]byte, error), p string, r io.ReaderAt, size int64) (res []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			res, err = nil, fmt.Errorf("parser failed on malformed executable: %v", v)
		}
	}()
	return probe(p, r, size)
}
