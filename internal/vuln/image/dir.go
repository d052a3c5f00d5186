package image

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ReadDir summarises a root filesystem directory as one layer. It never
// follows symlinks on the host: links are recorded and later resolved inside
// the root by FS, and files are opened with O_NOFOLLOW.
func (x *Extractor) ReadDir(ctx context.Context, root string) (*Layer, error) {
	lim := x.limits()
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("root filesystem %s: %w", root, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("root filesystem %s: not a directory", root)
	}
	layer := &Layer{Digest: "dir:" + root}
	var keptTotal int64
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			layer.Warnings = append(layer.Warnings, fmt.Sprintf("dir:%s: %v", root, err))
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if len(layer.Entries) >= lim.MaxEntries {
			return fmt.Errorf("dir:%s: more than %d entries: %w", root, lim.MaxEntries, ErrLimit)
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		e := Entry{Path: rel, Mode: uint32(info.Mode().Perm()), Size: info.Size()}
		switch {
		case d.IsDir():
			e.Type = TypeDir
		case d.Type()&fs.ModeSymlink != 0:
			e.Type = TypeSymlink
			if e.Link, err = os.Readlink(p); err != nil {
				return nil
			}
		case d.Type().IsRegular():
			e.Type = TypeFile
			if err := x.readDirFile(p, &e, &keptTotal, layer, "dir:"+root); err != nil {
				return err
			}
		default:
			e.Type = TypeOther
		}
		layer.Entries = append(layer.Entries, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return layer, nil
}

func (x *Extractor) readDirFile(p string, e *Entry, keptTotal *int64, layer *Layer, where string) error {
	wantKeep := x.Keep != nil && x.Keep(e.Path)
	if !wantKeep && (x.Probe == nil || e.Size < execMagicLen) {
		return nil
	}
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		layer.Warnings = append(layer.Warnings, fmt.Sprintf("%s: %s: %v", where, e.Path, err))
		return nil
	}
	defer f.Close()
	if wantKeep {
		return x.readContent(f, e, keptTotal, layer, where)
	}
	var head [4]byte
	if _, err := io.ReadFull(f, head[:]); err != nil || !isExecutable(head[:]) {
		return nil
	}
	if x.probeAllowed(e, layer, where) {
		x.probe(e, f, layer, where)
	}
	return nil
}
