package store

import (
	"fmt"
	"os"
	"syscall"
)

// DefaultMaxBytesShare is the share of the data disk's free space (at
// start) the flow store may fill when no size cap is given.
const DefaultMaxBytesShare = 0.5

// DefaultMaxBytes returns the default size cap of a store in dir: half of
// the free space of its file system now, plus what the store's files take
// already (they count against the cap). free is the free space found.
func DefaultMaxBytes(dir string) (limit, free int64, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, 0, fmt.Errorf("flow store: %w", err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("flow store: free space of %s: %w", dir, err)
	}
	free = int64(st.Bavail) * int64(st.Bsize)
	var used int64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			used += fi.Size()
		}
	}
	return int64(float64(free)*DefaultMaxBytesShare) + used, free, nil
}
