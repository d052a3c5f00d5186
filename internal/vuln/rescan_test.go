package vuln

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	bolt "go.etcd.io/bbolt"

	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/vuln/vulntest"
)

// ageInventory rewrites the stored inventory of digest as a scanner from
// before symbol-level analysis stored it: no analyzer stamp and no Go
// binaries' symbols (only the module list).
func ageInventory(t *testing.T, dir, digest string) {
	t.Helper()
	db, err := openDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketInventories)
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(b.Get([]byte(digest)), &raw); err != nil {
			return err
		}
		delete(raw, "analyzer")
		var inv map[string]json.RawMessage
		if err := json.Unmarshal(raw["inventory"], &inv); err != nil {
			return err
		}
		delete(inv, "goBinaries")
		raw["inventory"], _ = json.Marshal(inv)
		data, _ := json.Marshal(raw)
		return b.Put([]byte(digest), data)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// reopen opens the service in dir again (closed at the end of the test),
// recording its attribute calls.
func reopen(t *testing.T, dir string, opts Options) (*Service, *attrLog) {
	t.Helper()
	l := new(attrLog)
	opts.OnAttrs = l.record
	svc, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc, l
}

// TestOldScansRescanned: an image whose stored inventory an older analysis
// made (module-level Go findings: no symbols, no analyzer stamp) keeps its
// old findings when the server starts, and is scanned again as soon as it
// is observed; when that rescan fails (registry down) the old findings
// stay; the next database import rescans it, giving symbol-level findings
// stamped with the current analyzer version. An inventory of the current
// version is only re-matched, not rescanned.
func TestOldScansRescanned(t *testing.T) {
	ti := buildImages(t)
	// A registry that can be taken down, for a rescan that fails.
	var down atomic.Bool
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	reg := strings.TrimPrefix(srv.URL, "http://")
	goRef := reg + "/lab/goapp:old"
	alpRef := reg + "/lab/alpine:current"
	goDigest := vulntest.Push(t, ti.gobin, goRef, nil)
	alpDigest := vulntest.Push(t, ti.alpine, alpRef, nil)
	pods := []inventory.Workload{pod("goapp", goRef, goDigest, nil, ""), pod("alpine", alpRef, alpDigest, nil, "")}

	dir := t.TempDir()
	var attrs attrLog
	opts := Options{Registries: []string{"127.0.0.1"}, OnAttrs: attrs.record, RetryAfter: time.Nanosecond}
	svc, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	importFixtures(t, svc, true)
	svc.Observe(pods)
	wait(t, svc)
	fresh, _ := svc.Image(goDigest)
	alpBefore, _ := svc.Image(alpDigest)
	reachable := 0
	for _, f := range fresh.Findings {
		if f.Reachable == nil {
			t.Fatalf("a fresh scan left %s without reachability", f.ID)
		}
		if *f.Reachable {
			reachable++
		}
	}
	if reachable == 0 || reachable == len(fresh.Findings) {
		t.Fatalf("fresh scan: %d of %d Go findings reachable; want some but not all", reachable, len(fresh.Findings))
	}
	svc.Close()

	ageInventory(t, dir, goDigest)

	down.Store(true)
	svc, log2 := reopen(t, dir, opts)
	// Before the rescan: the old findings, module level only.
	old, ok := svc.Image(goDigest)
	// (Without build information the platform-limited records count too,
	// as they did then: a superset of the fresh scan's findings.)
	if !ok {
		t.Fatal("no report at start for the image analysed by an older version")
	}
	oldKeys := findingKeys(old.Findings)
	for _, k := range findingKeys(fresh.Findings) {
		if !slices.Contains(oldKeys, k) {
			t.Fatalf("old report at start lacks %s: %q", k, oldKeys)
		}
	}
	for _, f := range old.Findings {
		if f.Reachable != nil {
			t.Fatalf("an old-format inventory gave %s reachability", f.ID)
		}
	}
	svc.Observe(pods)
	if a := log2.get("lab/pod/lab/goapp"); len(a[AttrReachableCVE]) != len(a[AttrCVE]) || len(a[AttrCVE]) == 0 {
		t.Errorf("at start, the old findings should be published (module level: every CVE reachable): %v", a)
	}
	wait(t, svc)
	// The rescan failed (registry down): the old findings stay, published.
	if r, _ := svc.Image(goDigest); r.Error != "" || !r.ScannedAt.Equal(old.ScannedAt) || svc.Status().Stale != 1 {
		t.Fatalf("after a failed rescan: error %q, scanned %v (old %v), %d stale; want the old report kept and still stale",
			r.Error, r.ScannedAt, old.ScannedAt, svc.Status().Stale)
	}
	if a := log2.get("lab/pod/lab/goapp"); len(a[AttrCVE]) == 0 {
		t.Errorf("after a failed rescan the old attributes should stay: %v", a)
	}
	for _, r := range svc.Registries() {
		if r.Name == reg && r.LastError == "" {
			t.Errorf("registry %s shows no error: the rescan was not tried while it was down", reg)
		}
	}
	// A database import re-matches and rescans what an older analysis made.
	down.Store(false)
	if _, err := svc.ImportDB(t.Context(), filepath.Join("testdata", "platform"), nil); err != nil {
		t.Fatal(err)
	}
	wait(t, svc)
	rescanned, _ := svc.Image(goDigest)
	if !rescanned.ScannedAt.After(fresh.ScannedAt) || svc.Status().Stale != 0 {
		t.Fatalf("the image analysed by an older version was not scanned again")
	}
	if got, want := findingKeys(rescanned.Findings), findingKeys(fresh.Findings); !slices.Equal(got, want) {
		t.Errorf("rescan findings differ from a fresh scan:\n got %q\nwant %q", got, want)
	}
	n := 0
	for _, f := range rescanned.Findings {
		if f.Reachable != nil && *f.Reachable {
			n++
		}
	}
	if n != reachable {
		t.Errorf("after the rescan %d findings reachable, want %d", n, reachable)
	}
	a := log2.get("lab/pod/lab/goapp")
	if len(a[AttrReachableCVE]) >= len(a[AttrCVE]) {
		t.Errorf("after the rescan the reachable CVEs should be fewer than all: %v", a)
	}
	if alp, _ := svc.Image(alpDigest); !alp.ScannedAt.Equal(alpBefore.ScannedAt) {
		t.Errorf("an inventory of the current analyzer version was scanned again")
	}
	db := svc.bolt
	_ = db.View(func(tx *bolt.Tx) error {
		var inv storedInventory
		if err := json.Unmarshal(tx.Bucket(bucketInventories).Get([]byte(goDigest)), &inv); err != nil || inv.Analyzer != analyzerVersion {
			t.Errorf("stored inventory after the rescan: analyzer %d (err %v), want %d", inv.Analyzer, err, analyzerVersion)
		}
		return nil
	})
}
