package main

import (
	"os"
	"path/filepath"
)

// defaultDataDir is where a command keeps its data when --data is not set:
// $PALISADE_DATA/<sub>, else ~/.local/share/palisade/<sub>.
func defaultDataDir(sub string) string {
	if d := os.Getenv("PALISADE_DATA"); d != "" {
		return filepath.Join(d, sub)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "palisade", sub)
	}
	return filepath.Join(home, ".local", "share", "palisade", sub)
}
