package vuln

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestImportStatus: an import's progress is visible while it runs, and its
// time and outcome once done; a failed import says why.
func TestImportStatus(t *testing.T) {
	svc, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if st := svc.ImportStatus(); st.Running != nil || st.Last != nil {
		t.Fatalf("a fresh service reports imports: %+v", st)
	}
	dir := filepath.Join("testdata", "osv", "debian")
	var seen []ImportProgress
	before := time.Now().UTC()
	stats, err := svc.ImportDB(t.Context(), dir, func(done, total int) {
		if r := svc.ImportStatus().Running; r != nil {
			seen = append(seen, *r)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) == 0 || seen[len(seen)-1].Path != dir || seen[len(seen)-1].Total == 0 {
		t.Errorf("progress while running: %+v", seen)
	}
	st := svc.ImportStatus()
	if st.Running != nil || st.Last == nil {
		t.Fatalf("after the import: %+v", st)
	}
	if st.Last.Path != dir || st.Last.Error != "" || st.Last.Stats.Files != stats.Files || st.Last.Finished.Before(before) || st.Last.Started.After(st.Last.Finished) {
		t.Errorf("last import %+v, stats %+v", st.Last, stats)
	}
	missing := filepath.Join(t.TempDir(), "nothing-here")
	if _, err := os.Stat(missing); err == nil {
		t.Fatal("exists")
	}
	if _, err := svc.ImportDB(t.Context(), missing, nil); err == nil {
		t.Fatal("importing a missing directory worked")
	}
	if l := svc.ImportStatus().Last; l == nil || l.Error == "" || l.Path != missing {
		t.Errorf("a failed import is recorded as %+v", l)
	}
}
