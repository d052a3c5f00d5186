package vuln

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/palisade-dev/palisade/internal/vuln/image"
)

// LayersDir is the layer cache's directory inside the data directory: one
// file per layer summary, named by the layer digest, under a directory
// named by the summary format.
const LayersDir = "layers"

// DefaultCacheMaxBytes caps the layer cache when Options.CacheMaxBytes is
// zero — unless a quarter of the disk's free space at start is less.
const DefaultCacheMaxBytes = 2 << 30

// LayerCacheStats describe the layer cache (GET /api/v1/status).
type LayerCacheStats struct {
	Dir      string `json:"dir"`
	Layers   int    `json:"layers"`
	Bytes    int64  `json:"bytes"`
	MaxBytes int64  `json:"maxBytes"`
	// Evictions counts layers removed to stay under MaxBytes since start.
	Evictions uint64 `json:"evictions"`
	// Pinned counts layers in use by running scans (never evicted).
	Pinned int `json:"pinned"`
}

// layerCache implements image.LayerCache on files, so a layer shared by
// many images (a distribution base) is read once per data directory. Its
// files stay within maxBytes: when a new summary takes it over, the least
// recently used ones go first, except layers pinned by a running scan (an
// image larger than the cap may take it over until its scan ends). Use
// times survive a restart as the files' modification times.
type layerCache struct {
	dir string // the current format's directory
	max int64
	log *slog.Logger

	mu        sync.Mutex
	entries   map[string]*cacheEntry // layer digest →
	total     int64
	pins      map[string]int
	evictions uint64
}

type cacheEntry struct {
	size int64
	used time.Time
}

var layerDigest = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// openLayerCache opens the cache below dataDir, removing summaries of other
// formats (and the bbolt bucket older versions kept them in), and evicts
// down to maxBytes (0: the default, logged).
func openLayerCache(dataDir string, bdb *bolt.DB, maxBytes int64, log *slog.Logger) (*layerCache, error) {
	root := filepath.Join(dataDir, LayersDir)
	format := strings.TrimSuffix(layerFormat, ":")
	c := &layerCache{dir: filepath.Join(root, format), log: log, entries: map[string]*cacheEntry{}, pins: map[string]int{}}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, fmt.Errorf("layer cache: %w", err)
	}
	if old, err := os.ReadDir(root); err == nil {
		for _, e := range old {
			if e.Name() != format {
				os.RemoveAll(filepath.Join(root, e.Name()))
			}
		}
	}
	// Versions before the file cache kept summaries in vuln.db.
	err := bdb.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketLayers) == nil {
			return nil
		}
		return tx.DeleteBucket(bucketLayers)
	})
	if err != nil {
		return nil, fmt.Errorf("layer cache: dropping the old cache in %s: %w", DBFile, err)
	}
	files, err := os.ReadDir(c.dir)
	if err != nil {
		return nil, fmt.Errorf("layer cache: %w", err)
	}
	for _, f := range files {
		name := f.Name()
		info, err := f.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		hex, ok := strings.CutPrefix(name, "sha256-")
		if !ok || !layerDigest.MatchString("sha256:"+hex) {
			os.Remove(filepath.Join(c.dir, name)) // a temporary file of an interrupted write
			continue
		}
		c.entries["sha256:"+hex] = &cacheEntry{size: info.Size(), used: info.ModTime()}
		c.total += info.Size()
	}
	c.max = maxBytes
	if c.max <= 0 {
		c.max = DefaultCacheMaxBytes
		var st syscall.Statfs_t
		if syscall.Statfs(c.dir, &st) == nil {
			if quarter := int64(st.Bavail) * int64(st.Bsize) / 4; quarter+c.total < c.max {
				c.max = quarter + c.total
			}
		}
		log.Info("layer cache size cap (default: 2 GiB, at most a quarter of the free space; set --scan-cache-max-bytes to change)",
			"maxBytes", c.max, "dir", c.dir)
	} else {
		log.Info("layer cache size cap", "maxBytes", c.max, "dir", c.dir)
	}
	c.mu.Lock()
	c.evictLocked()
	c.mu.Unlock()
	return c, nil
}

func (c *layerCache) path(digest string) string {
	return filepath.Join(c.dir, "sha256-"+strings.TrimPrefix(digest, "sha256:"))
}

func (c *layerCache) GetLayer(digest string) (*image.Layer, bool) {
	c.mu.Lock()
	e := c.entries[digest]
	c.mu.Unlock()
	if e == nil {
		return nil, false
	}
	p := c.path(digest)
	data, err := os.ReadFile(p)
	var l image.Layer
	if err == nil {
		err = gob.NewDecoder(bytes.NewReader(data)).Decode(&l)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		// Removed by an eviction meanwhile, or damaged: read the layer again.
		if c.entries[digest] == e {
			c.log.Warn("layer cache: unreadable entry removed", "layer", digest, "err", err)
			c.removeLocked(digest)
		}
		return nil, false
	}
	now := time.Now()
	e.used = now
	_ = os.Chtimes(p, now, now)
	return &l, true
}

func (c *layerCache) PutLayer(digest string, l *image.Layer) {
	if !layerDigest.MatchString(digest) {
		return
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(l); err != nil {
		c.log.Warn("layer cache: encoding", "layer", digest, "err", err)
		return
	}
	size := int64(buf.Len())
	if size > c.max {
		c.log.Debug("layer cache: summary larger than the cache, not kept", "layer", digest, "bytes", size)
		return
	}
	tmp, err := os.CreateTemp(c.dir, "tmp-*")
	if err == nil {
		_, err = tmp.Write(buf.Bytes())
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), c.path(digest))
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
	}
	if err != nil {
		c.log.Warn("layer cache: storing", "layer", digest, "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.entries[digest]; old != nil {
		c.total -= old.size
	}
	c.entries[digest] = &cacheEntry{size: size, used: time.Now()}
	c.total += size
	c.evictLocked()
}

func (c *layerCache) removeLocked(digest string) {
	e := c.entries[digest]
	if e == nil {
		return
	}
	os.Remove(c.path(digest))
	delete(c.entries, digest)
	c.total -= e.size
}

// evictLocked removes least recently used unpinned summaries until the
// cache is within its cap.
func (c *layerCache) evictLocked() {
	if c.total <= c.max {
		return
	}
	type cand struct {
		digest string
		used   time.Time
	}
	var cands []cand
	for d, e := range c.entries {
		if c.pins[d] == 0 {
			cands = append(cands, cand{d, e.used})
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].used.Before(cands[j].used) })
	for _, x := range cands {
		if c.total <= c.max {
			return
		}
		c.removeLocked(x.digest)
		c.evictions++
	}
	if c.total > c.max {
		c.log.Info("layer cache over its cap while running scans use the rest", "bytes", c.total, "maxBytes", c.max)
	}
}

func (c *layerCache) pin(digest string) {
	c.mu.Lock()
	c.pins[digest]++
	c.mu.Unlock()
}

func (c *layerCache) unpin(digests []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range digests {
		if c.pins[d]--; c.pins[d] <= 0 {
			delete(c.pins, d)
		}
	}
	c.evictLocked()
}

// Stats returns the cache's size and cap.
func (c *layerCache) Stats() LayerCacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return LayerCacheStats{Dir: c.dir, Layers: len(c.entries), Bytes: c.total, MaxBytes: c.max, Evictions: c.evictions, Pinned: len(c.pins)}
}

// scanLayers is one scan's view of the cache: every layer it reads or
// stores stays pinned until release, so the scan never loses its own
// layers to an eviction another scan's layers cause.
type scanLayers struct {
	c      *layerCache
	pinned map[string]bool
}

func (c *layerCache) forScan() *scanLayers {
	return &scanLayers{c: c, pinned: map[string]bool{}}
}

func (s *scanLayers) hold(digest string) {
	if !s.pinned[digest] {
		s.pinned[digest] = true
		s.c.pin(digest)
	}
}

func (s *scanLayers) GetLayer(digest string) (*image.Layer, bool) {
	s.hold(digest)
	return s.c.GetLayer(digest)
}

func (s *scanLayers) PutLayer(digest string, l *image.Layer) {
	s.hold(digest)
	s.c.PutLayer(digest, l)
}

func (s *scanLayers) release() {
	ds := make([]string, 0, len(s.pinned))
	for d := range s.pinned {
		ds = append(ds, d)
	}
	s.c.unpin(ds)
}
