package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Kind is where an image comes from.
type Kind string

const (
	KindRegistry      Kind = "registry"
	KindOCILayout     Kind = "oci-layout"
	KindDockerArchive Kind = "docker-archive"
	KindDir           Kind = "dir"
)

// Source is a parsed image reference: "REF", "oci-layout:DIR",
// "docker-archive:FILE" or "dir:PATH".
type Source struct {
	Kind Kind
	Ref  string
}

// ParseSource reads the scan command's REF syntax.
func ParseSource(s string) (Source, error) {
	for _, k := range []Kind{KindOCILayout, KindDockerArchive, KindDir} {
		if rest, ok := strings.CutPrefix(s, string(k)+":"); ok {
			if rest == "" {
				return Source{}, fmt.Errorf("%q: missing path after %s:", s, k)
			}
			return Source{Kind: k, Ref: rest}, nil
		}
	}
	if _, err := name.ParseReference(s); err != nil {
		return Source{}, fmt.Errorf("%q is not an image reference (or oci-layout:DIR, docker-archive:FILE, dir:PATH): %w", s, err)
	}
	return Source{Kind: KindRegistry, Ref: s}, nil
}

func (s Source) String() string {
	if s.Kind == KindRegistry {
		return s.Ref
	}
	return string(s.Kind) + ":" + s.Ref
}

// LayerCache stores layer summaries by layer digest. Implementations must
// be safe for concurrent use.
type LayerCache interface {
	GetLayer(digest string) (*Layer, bool)
	PutLayer(digest string, l *Layer)
}

// Loaded is an image ready for inventory.
type Loaded struct {
	Source   Source
	Digest   string   // manifest digest ("" for dir:)
	Layers   []string // layer digests, bottom first
	OS, Arch string
	Variant  string // from the image config (v7 for linux/arm/v7)
	FS       *FS
	Cached   int // layers served from the cache
}

// Loader opens sources and flattens them.
type Loader struct {
	Extractor *Extractor
	Cache     LayerCache      // optional
	Remote    []remote.Option // auth, transport, context for registries
	Platform  *v1.Platform    // default linux/GOARCH
}

// Load opens src and reads every layer into a flattened FS.
func (l *Loader) Load(ctx context.Context, src Source) (*Loaded, error) {
	if src.Kind == KindDir {
		layer, err := l.Extractor.ReadDir(ctx, src.Ref)
		if err != nil {
			return nil, err
		}
		return &Loaded{Source: src, OS: "linux", FS: Flatten([]*Layer{layer})}, nil
	}
	img, err := l.open(ctx, src)
	if err != nil {
		return nil, err
	}
	return l.LoadImage(ctx, src, img)
}

func (l *Loader) platform() v1.Platform {
	if l.Platform != nil {
		return *l.Platform
	}
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

func (l *Loader) open(ctx context.Context, src Source) (v1.Image, error) {
	switch src.Kind {
	case KindRegistry:
		ref, err := name.ParseReference(src.Ref)
		if err != nil {
			return nil, err
		}
		opts := append([]remote.Option{remote.WithContext(ctx), remote.WithPlatform(l.platform())}, l.Remote...)
		img, err := remote.Image(ref, opts...)
		if err != nil {
			return nil, fmt.Errorf("pulling %s: %w", src.Ref, err)
		}
		return img, nil
	case KindDockerArchive:
		img, err := tarball.ImageFromPath(src.Ref, nil)
		if err != nil {
			return nil, fmt.Errorf("docker archive %s: %w", src.Ref, err)
		}
		return img, nil
	case KindOCILayout:
		idx, err := layout.ImageIndexFromPath(src.Ref)
		if err != nil {
			return nil, fmt.Errorf("OCI layout %s: %w", src.Ref, err)
		}
		img, err := l.pick(idx, 0)
		if err != nil {
			return nil, fmt.Errorf("OCI layout %s: %w", src.Ref, err)
		}
		return img, nil
	}
	return nil, fmt.Errorf("unknown image source kind %q", src.Kind)
}

// pick chooses the image of the loader's platform in an index (or the only
// image there is), descending into nested indexes.
func (l *Loader) pick(idx v1.ImageIndex, depth int) (v1.Image, error) {
	if depth > 4 {
		return nil, fmt.Errorf("image indexes nested too deeply")
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	want := l.platform()
	var fallback *v1.Descriptor
	for i := range im.Manifests {
		d := im.Manifests[i]
		if d.MediaType.IsIndex() {
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			return l.pick(child, depth+1)
		}
		if !d.MediaType.IsImage() {
			continue
		}
		if d.Platform == nil || d.Platform.Satisfies(want) {
			return idx.Image(d.Digest)
		}
		if fallback == nil {
			fallback = &d
		}
	}
	if fallback != nil && len(im.Manifests) == 1 {
		return idx.Image(fallback.Digest)
	}
	return nil, fmt.Errorf("no image for platform %s", want.String())
}

// LoadImage reads the layers of img (through the cache) and flattens them.
func (l *Loader) LoadImage(ctx context.Context, src Source, img v1.Image) (*Loaded, error) {
	out := &Loaded{Source: src}
	if d, err := img.Digest(); err == nil {
		out.Digest = d.String()
	}
	if cf, err := img.ConfigFile(); err == nil && cf != nil {
		out.OS, out.Arch, out.Variant = cf.OS, cf.Architecture, cf.Variant
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("%s: listing layers: %w", src, err)
	}
	lim := l.Extractor.limits()
	if len(layers) > lim.MaxLayers {
		return nil, fmt.Errorf("%s: %d layers, more than the limit of %d: %w", src, len(layers), lim.MaxLayers, ErrLimit)
	}
	var mem int64
	summaries := make([]*Layer, len(layers))
	for i, layer := range layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d, err := layer.Digest()
		if err != nil {
			return nil, fmt.Errorf("%s: layer %d digest: %w", src, i+1, err)
		}
		out.Layers = append(out.Layers, d.String())
		where := fmt.Sprintf("%s layer %d (%s)", src, i+1, d)
		var s *Layer
		cached := false
		if l.Cache != nil {
			s, cached = l.Cache.GetLayer(d.String())
		}
		if cached {
			out.Cached++
		} else if s, err = l.readLayer(layer, d, where); err != nil {
			return nil, err
		}
		if mem += s.MemSize(); mem > lim.MaxImageMemory {
			return nil, fmt.Errorf("%s: package metadata of the first %d layers exceeds the image memory budget of %d bytes: %w", src, i+1, lim.MaxImageMemory, ErrLimit)
		}
		s.Digest = d.String()
		summaries[i] = s
		if l.Cache != nil && !cached {
			// Only now: the layer was read to its end and matched its digest.
			l.Cache.PutLayer(d.String(), s)
		}
	}
	out.FS = Flatten(summaries)
	return out, nil
}

// ErrDigestMismatch marks a layer whose bytes do not hash to its digest.
var ErrDigestMismatch = errors.New("layer content does not match its digest")

// readLayer reads one layer's summary. The compressed stream is hashed as
// it is read and read to its end after the archive, and the summary is
// returned only when the hash equals the layer's digest: a registry serving
// other bytes under a shared base layer's digest cannot poison the cache.
func (l *Loader) readLayer(layer v1.Layer, digest v1.Hash, where string) (*Layer, error) {
	if digest.Algorithm != "sha256" {
		return nil, fmt.Errorf("%s: digest algorithm %q is not supported", where, digest.Algorithm)
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	defer rc.Close()
	h := sha256.New()
	counted := &countingReader{r: io.TeeReader(rc, h)}
	r, closeFn, compressed, err := Decompress(counted)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	defer closeFn()
	ratio := counted
	if !compressed {
		ratio = nil
	}
	s, err := l.Extractor.ReadLayer(r, ratio, where)
	if err != nil {
		return nil, err
	}
	// Read what follows the archive (padding, trailing data) to the end.
	lim := l.Extractor.limits()
	if _, err := io.Copy(io.Discard, io.LimitReader(counted, lim.MaxLayerBytes)); err != nil {
		return nil, fmt.Errorf("%s: reading to the end: %w", where, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest.Hex {
		return nil, fmt.Errorf("%s: %w (sha256:%s)", where, ErrDigestMismatch, got)
	}
	return s, nil
}

// Decompress sniffs gzip or zstd and returns the uncompressed stream.
func Decompress(r io.Reader) (io.Reader, func(), bool, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, false, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() { zr.Close() }, true, nil
	case bytes.Equal(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(256<<20))
		if err != nil {
			return nil, nil, false, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, true, nil
	}
	return br, func() {}, false, nil
}
