package console

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func etag(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:16])
}

// SourceFiles are the inputs of the console build, relative to web/: the
// package manifest and lockfile, the build script, the TypeScript
// configuration and everything under src/. web/build.mjs hashes the same
// list the same way.
func SourceFiles(web string) ([]string, error) {
	files := []string{"build.mjs", "package-lock.json", "package.json", "tsconfig.json"}
	err := filepath.WalkDir(filepath.Join(web, "src"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(web, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

// SourceHash is the SHA-256 over the sorted list of "path\x00sha256(content)\n"
// lines of SourceFiles: what BUILD.json's "sources" records.
func SourceHash(web string) (string, error) {
	files, err := SourceFiles(web)
	if err != nil {
		return "", fmt.Errorf("console sources: %w", err)
	}
	var b strings.Builder
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join(web, filepath.FromSlash(f)))
		if err != nil {
			return "", fmt.Errorf("console sources: %w", err)
		}
		sum := sha256.Sum256(raw)
		b.WriteString(f + "\x00" + hex.EncodeToString(sum[:]) + "\n")
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:]), nil
}
