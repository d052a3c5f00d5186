package osv

import (
	"archive/zip"
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ImportStats summarises an import.
type ImportStats struct {
	Files   int `json:"files"`   // JSON documents read
	Added   int `json:"added"`   // new advisories
	Updated int `json:"updated"` // advisories whose content changed
	Skipped int `json:"skipped"` // documents that are not valid OSV records
	// Converted counts documents in a distribution's own format (Debian
	// security tracker, Alpine secdb) converted to OSV records.
	Converted int      `json:"converted,omitempty"`
	Errors    []string `json:"errors,omitempty"`
	Info      Info     `json:"info"`
}

// Progress is told how many of the total documents are done.
type Progress func(done, total int)

const (
	importBatch     = 500
	maxReportErrors = 20
	maxZipEntries   = 2_000_000
)

// Import reads a directory tree or a zip archive of OSV JSON documents (an
// osv.dev ecosystem export, or the data/osv directory of golang.org/x/vulndb)
// and upserts them: an advisory seen again replaces its previous version, so
// importing a newer export updates the database in place.
func (s *Store) Import(ctx context.Context, path string, progress Progress) (ImportStats, error) {
	var docs []document
	st, err := os.Stat(path)
	if err != nil {
		return ImportStats{}, fmt.Errorf("vulnerability data %s: %w", path, err)
	}
	if st.IsDir() {
		docs, err = fsDocuments(os.DirFS(path), ".", path)
	} else {
		var zr *zip.ReadCloser
		zr, err = zip.OpenReader(path)
		if err != nil {
			return ImportStats{}, fmt.Errorf("vulnerability data %s: expected a directory or a zip of OSV JSON: %w", path, err)
		}
		defer zr.Close()
		docs, err = zipDocuments(&zr.Reader, path)
	}
	if err != nil {
		return ImportStats{}, err
	}
	return s.importDocuments(ctx, docs, progress)
}

// ImportFS is Import for a directory or zip named inside fsys (for
// instance an os.Root's FS, which keeps every read below its directory,
// symbolic links included).
func (s *Store) ImportFS(ctx context.Context, fsys fs.FS, name string, progress Progress) (ImportStats, error) {
	st, err := fs.Stat(fsys, name)
	if err != nil {
		return ImportStats{}, err
	}
	var docs []document
	if st.IsDir() {
		if docs, err = fsDocuments(fsys, name, name); err != nil {
			return ImportStats{}, err
		}
		return s.importDocuments(ctx, docs, progress)
	}
	f, err := fsys.Open(name)
	if err != nil {
		return ImportStats{}, err
	}
	defer f.Close()
	ra, ok := f.(io.ReaderAt)
	if !ok {
		return ImportStats{}, fmt.Errorf("vulnerability data %s: not a readable file", name)
	}
	zr, err := zip.NewReader(ra, st.Size())
	if err != nil {
		return ImportStats{}, fmt.Errorf("vulnerability data %s: expected a directory or a zip of OSV JSON: %w", name, err)
	}
	if docs, err = zipDocuments(zr, name); err != nil {
		return ImportStats{}, err
	}
	return s.importDocuments(ctx, docs, progress)
}

// document is one JSON file to import, opened lazily.
type document struct {
	name string
	size int64
	open func() (io.ReadCloser, error)
}

// fsDocuments lists the JSON files below dir in fsys, named by display
// joined with their path below dir in errors and progress.
func fsDocuments(fsys fs.FS, dir, display string) ([]document, error) {
	var docs []document
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".json") {
			info, err := d.Info()
			if err != nil {
				return err
			}
			rel := p
			if dir != "." {
				rel = strings.TrimPrefix(strings.TrimPrefix(p, dir), "/")
			}
			docs = append(docs, document{name: filepath.Join(display, rel), size: info.Size(), open: func() (io.ReadCloser, error) { return fsys.Open(p) }})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading vulnerability data %s: %w", display, err)
	}
	sort.Slice(docs, func(i, j int) bool { return docs[i].name < docs[j].name })
	return docs, nil
}

func zipDocuments(zr *zip.Reader, name string) ([]document, error) {
	if len(zr.File) > maxZipEntries {
		return nil, fmt.Errorf("vulnerability data %s: %d zip entries exceed the limit of %d", name, len(zr.File), maxZipEntries)
	}
	var docs []document
	for _, f := range zr.File {
		if f.FileInfo().IsDir() || !strings.HasSuffix(f.Name, ".json") {
			continue
		}
		docs = append(docs, document{name: name + ":" + f.Name, size: int64(f.UncompressedSize64), open: f.Open})
	}
	return docs, nil
}

// parseDocument reads one document: an OSV record is returned; a
// distribution's own format is converted, its records handed to add, and
// nil returned.
func parseDocument(d document, add func(*Advisory)) (*Advisory, error) {
	rc, err := d.open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 64<<10)
	head, _ := br.Peek(64 << 10)
	switch sniff(head) {
	case formatDebianTracker:
		return nil, convertDebianTracker(io.LimitReader(br, maxConvertedDocument), time.Time{}, add)
	case formatAlpineSecDB:
		data, err := io.ReadAll(io.LimitReader(br, MaxRecordSize+1))
		if err != nil {
			return nil, err
		}
		if len(data) > MaxRecordSize {
			return nil, fmt.Errorf("more than %d bytes", MaxRecordSize)
		}
		return nil, convertAlpineSecDB(data, time.Time{}, add)
	}
	if d.size > MaxRecordSize {
		return nil, fmt.Errorf("%d bytes exceed the %d byte limit", d.size, MaxRecordSize)
	}
	data, err := io.ReadAll(io.LimitReader(br, MaxRecordSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxRecordSize {
		return nil, fmt.Errorf("more than %d bytes", MaxRecordSize)
	}
	return Parse(data)
}

// maxConvertedDocument bounds one distribution data file (Debian's whole
// tracker is about 100 MB).
const maxConvertedDocument = 2 << 30

// converted accumulates the records converted from distribution formats,
// merging entries of the same id.
type converted struct {
	byID map[string]*Advisory
}

func (c *converted) add(a *Advisory) {
	if old, ok := c.byID[a.ID]; ok {
		mergeAffected(old, a)
		return
	}
	c.byID[a.ID] = a
}

// storeConverted stores converted records, each merged into the stored
// record of its id (keeping that record's entries for other releases).
func (s *Store) storeConverted(ctx context.Context, c *converted, stats *ImportStats) error {
	ids := make([]string, 0, len(c.byID))
	for id := range c.byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for start := 0; start < len(ids); start += importBatch {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(start+importBatch, len(ids))
		batch := make([]*Advisory, 0, end-start)
		for _, id := range ids[start:end] {
			batch = append(batch, c.byID[id])
		}
		if err := s.putAll(batch, true, stats); err != nil {
			return err
		}
	}
	return nil
}

// putAll stores records in one transaction, counting what changed. With
// merge, each is merged into the stored record of its id first.
func (s *Store) putAll(as []*Advisory, merge bool, stats *ImportStats) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, a := range as {
			if merge {
				if old := tx.Bucket(bucketAdvisories).Get([]byte(a.ID)); old != nil {
					var prev Advisory
					if json.Unmarshal(old, &prev) == nil {
						mergeAffected(&prev, a)
						a = &prev
					}
				}
			}
			changed, added, err := put(tx, a)
			if err != nil {
				return fmt.Errorf("storing %s: %w", a.ID, err)
			}
			switch {
			case added:
				stats.Added++
			case changed:
				stats.Updated++
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("vulnerability database: %w", err)
	}
	return nil
}

func (s *Store) importDocuments(ctx context.Context, docs []document, progress Progress) (ImportStats, error) {
	var stats ImportStats
	distro := &converted{byID: map[string]*Advisory{}}
	total := len(docs)
	if progress != nil {
		progress(0, total)
	}
	for start := 0; start < total; start += importBatch {
		if err := ctx.Err(); err != nil {
			return stats, err
		}
		end := min(start+importBatch, total)
		var parsed []*Advisory
		for _, d := range docs[start:end] {
			stats.Files++
			a, err := parseDocument(d, distro.add)
			if err == nil && a == nil {
				stats.Converted++
				continue
			}
			if err != nil {
				stats.Skipped++
				if len(stats.Errors) < maxReportErrors {
					stats.Errors = append(stats.Errors, fmt.Sprintf("%s: %v", d.name, err))
				}
				continue
			}
			a.Details = "" // reports carry the summary; keep the database small
			parsed = append(parsed, a)
		}
		if err := s.putAll(parsed, false, &stats); err != nil {
			return stats, err
		}
		if progress != nil {
			progress(end, total)
		}
	}
	if err := s.storeConverted(ctx, distro, &stats); err != nil {
		return stats, err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		gen := getUint(m.Get(keyGeneration))
		if stats.Added+stats.Updated > 0 {
			gen++
			if err := putUint(m, keyGeneration, gen); err != nil {
				return err
			}
		}
		if err := putUint(m, keyCount, uint64(tx.Bucket(bucketAdvisories).Stats().KeyN)); err != nil {
			return err
		}
		if err := putUint(m, keyImported, uint64(time.Now().UnixNano())); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return stats, fmt.Errorf("vulnerability database: %w", err)
	}
	stats.Info, err = s.Info()
	if err == nil && total > 0 && stats.Skipped == total && len(stats.Errors) > 0 {
		err = fmt.Errorf("none of the %d JSON documents is an OSV record (first error: %s)", total, stats.Errors[0])
	}
	if total == 0 {
		err = fmt.Errorf("no OSV JSON documents found")
	}
	return stats, err
}
