package console_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/palisade-dev/palisade/internal/console/browsertest"
	"github.com/palisade-dev/palisade/internal/server"
	"github.com/palisade-dev/palisade/internal/vuln/sample"
)

// TestVulnDBImportProgress: importing the Go vulnerability database (about
// 4,800 OSV files) from the vulnerabilities page shows the import's
// progress while it runs, then its outcome and the import time.
func TestVulnDBImportProgress(t *testing.T) {
	osv, err := sample.GoVulnDB()
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.Start(context.Background(), server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		VulnImportDir: filepath.Dir(osv)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	b := browsertest.Start(t)
	p := b.NewPage(t)
	p.SignIn(s.URL(), s.AdminToken())
	p.Open(s.URL() + "/#/vulnerabilities")
	p.WaitFor("database status", `document.querySelector("[data-testid=vulndb-status]")`, 20*time.Second)
	if got := browsertest.Eval[string](p, `document.querySelector("[data-testid=vulndb-status]").dataset.imported`); got != "" {
		t.Fatalf("an import time before any import: %q", got)
	}
	// Record every progress the page shows.
	browsertest.Eval[any](p, `(() => { window.progress = []; new MutationObserver(() => {
		const e = document.querySelector("[data-testid=vulndb-progress]");
		if (e) window.progress.push(e.textContent); }).observe(document.body, {subtree: true, childList: true, characterData: true}); })()`)
	p.Do("import", 10*time.Second,
		chromedp.Click(`[data-testid=vulndb-status] button.link`),
		chromedp.WaitVisible(`[data-testid=vulndb-path]`),
		chromedp.SendKeys(`[data-testid=vulndb-path]`, filepath.Base(osv)),
		chromedp.Click(`[data-testid=vulndb-form] button[type=submit]`))
	p.WaitFor("import done", `document.querySelector("[data-testid=vulndb-message]")?.textContent.startsWith("Imported")`, 3*time.Minute)
	progress := browsertest.Eval[[]string](p, `window.progress`)
	t.Logf("progress shown: %d updates, first %q", len(progress), first(progress))
	if len(progress) == 0 {
		t.Error("no progress shown while the import ran")
	}
	p.WaitFor("import time shown", `document.querySelector("[data-testid=vulndb-status]").dataset.imported !== ""`, 10*time.Second)
	at, err := time.Parse(time.RFC3339Nano, browsertest.Eval[string](p, `document.querySelector("[data-testid=vulndb-status]").dataset.imported`))
	if err != nil || time.Since(at) > time.Minute {
		t.Errorf("import time %v (%v), want just now", at, err)
	}
	if n := browsertest.Eval[string](p, `document.querySelector("[data-testid=vulndb-status]").dataset.advisories`); n == "0" {
		t.Error("no advisory after the import")
	}
	p.Clean("vulnerability database import")
	p.Screenshot("vulndb-imported")
}

func first(xs []string) string {
	if len(xs) == 0 {
		return ""
	}
	return xs[0]
}
