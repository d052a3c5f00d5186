package osv

import (
	"archive/zip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// ImportStats summarises an import.
type ImportStats struct {
	Files   int      `json:"files"`   // JSON documents read
	Added   int      `json:"added"`   // new advisories
	Updated int      `json:"updated"` // advisories whose content changed
	Skipped int      `json:"skipped"` // documents that are not valid OSV records
	Errors  []string `json:"errors,omitempty"`
	Info    Info     `json:"info"`
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

func readDocument(d document) ([]byte, error) {
	if d.size > MaxRecordSize {
		return nil, fmt.Errorf("%d bytes exceed the %d byte limit", d.size, MaxRecordSize)
	}
	rc, err := d.open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, MaxRecordSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxRecordSize {
		return nil, fmt.Errorf("more than %d bytes", MaxRecordSize)
	}
	return data, nil
}

func (s *Store) importDocuments(ctx context.Context, docs []document, progress Progress) (ImportStats, error) {
	var stats ImportStats
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
			data, err := readDocument(d)
			var a *Advisory
			if err == nil {
				a, err = Parse(data)
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
		err := s.db.Update(func(tx *bolt.Tx) error {
			for _, a := range parsed {
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
			return stats, fmt.Errorf("vulnerability database: %w", err)
		}
		if progress != nil {
			progress(end, total)
		}
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
		return nil
	})
	if err != nil {
		return stats, fmt.Errorf("vulnerability database: %w", err)
	}
	stats.Info, err = s.Info()
	if err == nil && total > 0 && stats.Skipped == total {
		err = fmt.Errorf("none of the %d JSON documents is an OSV record (first error: %s)", total, stats.Errors[0])
	}
	if total == 0 {
		err = fmt.Errorf("no OSV JSON documents found")
	}
	return stats, err
}
