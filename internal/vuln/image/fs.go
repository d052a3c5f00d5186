package image

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// FS is the flattened view of an image: the union of its layers, top layer
// first, with whiteouts applied. It never touches the host filesystem.
type FS struct {
	entries  map[string]*Entry
	Warnings []string
}

// maxSymlinkHops matches Linux's ELOOP bound.
const maxSymlinkHops = 40

// Flatten merges layers given bottom first, as in a manifest.
func Flatten(layers []*Layer) *FS {
	f := &FS{entries: map[string]*Entry{}}
	hidden := map[string]bool{} // lower entries at or below these paths are gone
	opaque := map[string]bool{} // lower entries strictly below these paths are gone
	for i := len(layers) - 1; i >= 0; i-- {
		l := layers[i]
		f.Warnings = append(f.Warnings, l.Warnings...)
		mine := map[string]bool{}
		var wh, opq []string
		for j := range l.Entries {
			e := &l.Entries[j]
			switch e.Type {
			case TypeWhiteout:
				wh = append(wh, e.Path)
				continue
			case TypeOpaque:
				opq = append(opq, e.Path)
				continue
			}
			if isHidden(e.Path, hidden, opaque) {
				continue
			}
			if _, seen := f.entries[e.Path]; seen && !mine[e.Path] {
				continue // an upper layer has it
			}
			f.entries[e.Path] = e // a later entry of the same layer wins
			mine[e.Path] = true
		}
		for p := range mine {
			if f.entries[p].Type != TypeDir {
				hidden[p] = true
			}
		}
		for _, p := range wh {
			hidden[p] = true
		}
		for _, p := range opq {
			opaque[p] = true
		}
	}
	return f
}

func isHidden(p string, hidden, opaque map[string]bool) bool {
	if hidden[p] {
		return true
	}
	for dir := path.Dir(p); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if hidden[dir] || opaque[dir] {
			return true
		}
	}
	return opaque[""]
}

// Len is the number of entries.
func (f *FS) Len() int { return len(f.entries) }

// Entries returns all entries sorted by path.
func (f *FS) Entries() []*Entry {
	out := make([]*Entry, 0, len(f.entries))
	for _, e := range f.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Resolve follows symlinks (and a final hard link) in p the way the kernel
// would inside a chroot of the image: absolute targets start at the image
// root and ".." stops at it, so no link can reach outside the image.
func (f *FS) Resolve(p string) (*Entry, error) {
	cur, err := f.resolvePath(p)
	if err != nil {
		return nil, err
	}
	for hops := 0; ; hops++ {
		e, ok := f.entries[cur]
		if !ok {
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		}
		if e.Type != TypeHardlink {
			return e, nil
		}
		if hops >= maxSymlinkHops {
			return nil, fmt.Errorf("%s: too many levels of hard links", p)
		}
		cur = e.Link
	}
}

func (f *FS) resolvePath(p string) (string, error) {
	parts := splitPath(p)
	cur := ""
	hops := 0
	for len(parts) > 0 {
		name := parts[0]
		parts = parts[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = parentOf(cur)
			continue
		}
		next := name
		if cur != "" {
			next = cur + "/" + name
		}
		e := f.entries[next]
		if e != nil && e.Type == TypeSymlink {
			hops++
			if hops > maxSymlinkHops {
				return "", fmt.Errorf("%s: too many levels of symbolic links (a symlink loop)", p)
			}
			if strings.HasPrefix(e.Link, "/") {
				cur = ""
			}
			parts = append(splitPath(e.Link), parts...)
			continue
		}
		cur = next
	}
	return cur, nil
}

func splitPath(p string) []string { return strings.Split(p, "/") }

func parentOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// ErrNotKept is returned for files whose content was not selected for keeping.
var ErrNotKept = errors.New("content not kept by the extractor")

// ReadFile returns the kept content of the file at p, following symlinks.
func (f *FS) ReadFile(p string) ([]byte, error) {
	e, err := f.Resolve(p)
	if err != nil {
		return nil, err
	}
	switch {
	case e.Type != TypeFile:
		return nil, fmt.Errorf("%s: not a regular file", p)
	case e.Data == nil && e.Size > 0:
		return nil, fmt.Errorf("%s: %w", p, ErrNotKept)
	}
	return e.Data, nil
}

// Lstat returns the entry stored at p itself, without following a final
// symlink (intermediate directories are resolved).
func (f *FS) Lstat(p string) (*Entry, bool) {
	dir, base := path.Split(p)
	d, err := f.resolvePath(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return nil, false
	}
	if d != "" {
		base = d + "/" + base
	}
	e, ok := f.entries[base]
	return e, ok
}

// Exists reports whether p resolves to an entry.
func (f *FS) Exists(p string) bool {
	_, err := f.Resolve(p)
	return err == nil
}

// Glob returns the sorted paths of kept regular files matching pattern
// (path.Match syntax, matched against the stored, unresolved paths).
func (f *FS) Glob(pattern string) []string {
	var out []string
	for p, e := range f.entries {
		if e.Type != TypeFile || e.Data == nil {
			continue
		}
		if ok, _ := path.Match(pattern, p); ok {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// KeptFiles returns the kept regular files, sorted by path.
func (f *FS) KeptFiles() []*Entry {
	var out []*Entry
	for _, e := range f.entries {
		if e.Type == TypeFile && e.Data != nil {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Probed returns the files the Prober reported on, sorted by path.
func (f *FS) Probed() []*Entry {
	var out []*Entry
	for _, e := range f.entries {
		if e.Probe != nil {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}
