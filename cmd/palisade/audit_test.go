package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/pkg/api"
)

// TestAuditBlackBox: changes made through a `palisade server` process are
// in `palisade audit` with who, what, when, the outcome and the state
// before and after; secrets are not; only an admin reads the log.
func TestAuditBlackBox(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p := startCLI(t, "server", "--data", dir, "--listen", "127.0.0.1:0")
	defer p.stop(t, syscall.SIGTERM)
	l := p.line(t, "listening on", 60*time.Second)
	base := strings.TrimSpace(l[strings.LastIndex(l, " "):])
	adminFile := filepath.Join(dir, "admin-token")
	env := map[string]string{"PALISADE_SERVER": base, "PALISADE_TOKEN": "", "PALISADE_CA": filepath.Join(dir, "ca.crt")}
	run := func(args ...string) string {
		t.Helper()
		out, _, err := runCLI(t, env, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out
	}
	start := time.Now().Add(-time.Second)
	out := run("token", "create", "ops", "--role", "operator", "--token-file", adminFile)
	ops := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
	run("inventory", "filters", "save", "web", "label.app = web", "--token-file", adminFile)
	run("inventory", "filters", "delete", "web", "--token", ops)
	if _, _, err := runCLI(t, env, "inventory", "filters", "delete", "web", "--token", ops); err == nil {
		t.Fatal("deleting a deleted filter succeeded")
	}
	if _, _, err := runCLI(t, env, "audit", "--token", ops); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("an operator reads the audit log: %v", err)
	}
	var recs []api.AuditRecord
	if err := json.Unmarshal([]byte(run("audit", "-o", "json", "--token-file", adminFile)), &recs); err != nil {
		t.Fatal(err)
	}
	want := []struct{ who, action, path string }{
		{"admin", "POST /api/v1/tokens", "/api/v1/tokens"},
		{"admin", "POST /api/v1/filters", "/api/v1/filters"},
		{"ops", "DELETE /api/v1/filters/{name}", "/api/v1/filters/web"},
		{"ops", "DELETE /api/v1/filters/{name}", "/api/v1/filters/web"},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records: %+v", len(recs), recs)
	}
	for i, w := range want {
		r := recs[i]
		if r.Who != w.who || r.Action != w.action || r.Path != w.path || r.Time.Before(start) || r.Time.After(time.Now()) {
			t.Errorf("record %d: %+v, want %+v", i, r, w)
		}
	}
	if recs[2].Status != 204 || !strings.Contains(string(recs[2].Before), `"label.app = \"web\""`) && !strings.Contains(string(recs[2].Before), `label.app`) {
		t.Errorf("the delete's before: %d %s", recs[2].Status, recs[2].Before)
	}
	if recs[3].Status != 404 || len(recs[3].Before) != 0 {
		t.Errorf("the failed delete: %d %s", recs[3].Status, recs[3].Before)
	}
	if !strings.Contains(string(recs[1].After), `"web"`) {
		t.Errorf("the save's after: %s", recs[1].After)
	}
	secret := ops[strings.LastIndex(ops, "_")+1:]
	all, _ := json.Marshal(recs)
	if strings.Contains(string(all), secret) || !strings.Contains(string(recs[0].After), "[redacted]") {
		t.Errorf("the token's secret is in the audit log: %s", recs[0].After)
	}
	table := run("audit", "--who", "ops", "--token-file", adminFile)
	if strings.Count(table, "DELETE") != 2 || strings.Contains(table, "POST") {
		t.Errorf("audit --who ops:\n%s", table)
	}
	if _, err := os.Stat(adminFile); err != nil {
		t.Fatal(err)
	}
}
