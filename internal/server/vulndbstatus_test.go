package server

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestVulnDBStatus: GET /api/v1/vulndb tells the advisories in the
// database and when and from what they were last imported.
func TestVulnDBStatus(t *testing.T) {
	imports := t.TempDir()
	src := filepath.Join("..", "vuln", "testdata", "osv", "debian")
	files, err := filepath.Glob(filepath.Join(src, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no OSV test data in %s: %v", src, err)
	}
	if err := os.MkdirAll(filepath.Join(imports, "debian"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(imports, "debian", filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Start(context.Background(), Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", VulnImportDir: imports})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	var before VulnDBStatus
	if code := get(t, s, "/api/v1/vulndb", &before); code != http.StatusOK {
		t.Fatalf("GET /api/v1/vulndb: %d", code)
	}
	if before.Last != nil || before.Running != nil {
		t.Errorf("before any import: %+v", before)
	}
	t0 := time.Now().UTC()
	if code := status(t, s, "", "POST", "/api/v1/vulndb/import", `{"path":"debian"}`); code != http.StatusOK {
		t.Fatalf("import: %d", code)
	}
	var after VulnDBStatus
	get(t, s, "/api/v1/vulndb", &after)
	if after.Last == nil || after.Last.Error != "" || after.Last.Path != "debian" || after.Last.Finished.Before(t0) || after.Last.Stats.Files != len(files) {
		t.Errorf("after the import: last %+v (want debian, %d files, finished after %s)", after.Last, len(files), t0)
	}
	if after.Advisories == 0 || after.Generation == before.Generation || after.Running != nil || after.Percent != nil {
		t.Errorf("after the import: %+v", after)
	}
	// Like every API call, it needs a token.
	if code := status(t, s, "-", "GET", "/api/v1/vulndb", ""); code != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401", code)
	}
}
