package server

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	flowstore "github.com/palisade-dev/palisade/internal/flow/store"
)

// secureDataDir creates the data directory, or makes an existing one and
// everything in it the server's own: directories 0700, files without any
// group or other permission (secrets — tokens, keys — are 0600). What it
// fixes is logged.
func secureDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("server: data directory: %w", err)
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("server: data directory: %w", err)
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("server: data directory: %w", err)
		}
		perm := fi.Mode().Perm()
		want := perm &^ 0o077
		if d.IsDir() {
			want = 0o700
		}
		if perm != want {
			if err := os.Chmod(p, want); err != nil {
				return fmt.Errorf("server: data directory: %w", err)
			}
			slog.Warn("server: fixed permissions in the data directory", "path", p, "was", perm, "now", want)
		}
		return nil
	})
}

// openFlowStore opens the flow store with its retention: maxAge, and
// maxBytes (0: a share of the disk's free space now, stated in the log).
func openFlowStore(dir string, maxAge time.Duration, maxBytes int64) (*flowstore.Store, error) {
	if maxBytes == 0 {
		limit, free, err := flowstore.DefaultMaxBytes(dir)
		if err != nil {
			return nil, err
		}
		maxBytes = limit
		slog.Info("flow store size cap (default: half of the free space; set --flow-max-bytes to change)",
			"maxBytes", maxBytes, "freeBytes", free, "dir", dir)
	}
	slog.Info("flow retention", "maxAge", maxAge, "maxBytes", maxBytes)
	return flowstore.Open(dir, flowstore.Options{MaxAge: maxAge, MaxBytes: maxBytes})
}
