package console_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/palisade-dev/palisade/internal/console/browsertest"
	"github.com/palisade-dev/palisade/internal/server"
)

// pages are the console's pages, with what each shows once loaded.
var pages = []struct{ name, hash, ready string }{
	{"inventory", "#/inventory", `document.querySelector("[data-testid=inventory-table]")`},
	{"flows", "#/flows", `document.querySelector("[data-testid=flows-table]")`},
	{"top", "#/top", `document.querySelector("[data-testid=top-table]")`},
	{"map", "#/map", `(document.querySelector("[data-testid=service-map]")?.dataset.layoutMs ?? "") !== ""`},
	{"policies", "#/policies", `document.querySelector("[data-testid=alerts-table]")`},
	{"enforcement", "#/enforcement", `document.querySelector("[data-testid=enforcement-agents]")`},
	{"vulnerabilities", "#/vulnerabilities", `document.querySelector("[data-testid=vuln-table]")`},
	{"agents", "#/agents", `document.querySelector("[data-testid=agents-table]")`},
}

func startServer(t testing.TB) *server.Server {
	t.Helper()
	s, err := server.Start(context.Background(), server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", FlowWindow: time.Second,
		ScanRegistries: []string{"127.0.0.1"}}) // nothing is pulled from elsewhere
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// TestPagesLoadOnEmptyServer: every page of a server with nothing
// connected loads cleanly (no console error, no failed request) in both
// themes; keyboard focus reaches the navigation.
func TestPagesLoadOnEmptyServer(t *testing.T) {
	s := startServer(t)
	b := browsertest.Start(t)
	p := b.NewPage(t)
	// Without a token the API refuses, and the console asks for one.
	t.Run("sign-in", func(t *testing.T) {
		p.Allow(`HTTP 401|status of 401`)
		p.Open(s.URL() + "/#/inventory")
		p.WaitFor("sign-in form", `document.querySelector("[data-testid=token-input]") !== null`, 20*time.Second)
		p.Do("a wrong token", 10*time.Second, chromedp.SendKeys(`[data-testid=token-input]`, "not-a-token\r"))
		p.WaitFor("refusal shown", `document.querySelector(".signin [role=alert]")?.textContent.includes("refused")`, 10*time.Second)
		p.Screenshot("signin")
		p.Problems()
		p.SignIn(s.URL(), s.AdminToken())
		if tok := browsertest.Eval[string](p, `sessionStorage.getItem("palisade.token") ?? ""`); tok != s.AdminToken() {
			t.Error("the token is not in sessionStorage")
		}
		if n := browsertest.Eval[int](p, `localStorage.length === 0 ? 0 : Object.keys(localStorage).filter(k => localStorage.getItem(k).includes(sessionStorage.getItem("palisade.token"))).length`); n != 0 {
			t.Error("the token is in localStorage")
		}
	})
	p.Clean("signed in")
	for _, pg := range pages {
		t.Run(pg.name, func(t *testing.T) {
			p.Open(s.URL() + "/" + pg.hash)
			p.WaitFor(pg.name+" loaded", pg.ready, 20*time.Second)
			p.Clean(pg.name)
			p.Screenshot("empty-" + pg.name)
		})
	}
	// The harness itself: a failed request is reported.
	t.Run("problems are seen", func(t *testing.T) {
		browsertest.Eval[any](p, `fetch("/no-such-file.js").then(() => 1)`)
		p.WaitFor("404 reported", `new Promise(r => setTimeout(() => r(true), 300))`, 5*time.Second)
		if pr := p.Problems(); len(pr) == 0 || !strings.Contains(strings.Join(pr, " "), "404") {
			t.Errorf("a 404 went unnoticed: %v", pr)
		}
	})
	// Keyboard: the first Tab reaches the skip link, the next ones the
	// navigation; Enter on a link opens its page.
	t.Run("keyboard", func(t *testing.T) {
		// A fresh load: keyboard focus starts at the top of the document.
		p.Do("load", 30*time.Second, chromedp.Navigate(s.URL()+"/#/agents"), chromedp.Reload())
		p.WaitFor("agents page", pages[len(pages)-1].ready, 20*time.Second)
		p.Do("tab", 5*time.Second, chromedp.KeyEvent(kb.Tab))
		if got := browsertest.Eval[string](p, `document.activeElement?.textContent ?? ""`); got != "Skip to content" {
			t.Errorf("first Tab focuses %q, want the skip link", got)
		}
		p.Do("tab tab", 5*time.Second, chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(kb.Tab))
		if got := browsertest.Eval[string](p, `document.activeElement?.textContent ?? ""`); got != "Inventory" {
			t.Errorf("third Tab focuses %q, want the Inventory link", got)
		}
		outline := browsertest.Eval[string](p, `getComputedStyle(document.activeElement).outlineStyle`)
		if outline == "none" {
			t.Error("the focused link shows no focus outline")
		}
		p.Do("enter", 5*time.Second, chromedp.KeyEvent(kb.Enter))
		p.WaitFor("inventory by keyboard", `location.hash === "#/inventory" && document.querySelector("[data-testid=inventory-table]") !== null`, 20*time.Second)
		p.Do("slash focuses the filter", 5*time.Second, chromedp.KeyEvent("/"))
		if id := browsertest.Eval[string](p, `document.activeElement?.dataset.testid ?? ""`); id != "filter-input" {
			t.Errorf("/ focuses %q, want the filter box", id)
		}
		p.Clean("keyboard")
	})
	// Through the server's route table: the console's headers, and the API
	// untouched by them.
	t.Run("headers", func(t *testing.T) {
		for path, ctype := range map[string]string{"/": "text/html; charset=utf-8", "/api/v1/status": "application/json"} {
			req, _ := http.NewRequest(http.MethodGet, s.URL()+path, nil)
			req.Header.Set("Authorization", "Bearer "+s.AdminToken())
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != ctype {
				t.Errorf("GET %s: %s %q, want 200 %q", path, res.Status, res.Header.Get("Content-Type"), ctype)
			}
			if csp := res.Header.Get("Content-Security-Policy"); (path == "/") != strings.Contains(csp, "default-src 'none'") {
				t.Errorf("GET %s: CSP %q", path, csp)
			}
		}
		// The static files need no token; the API does.
		res, err := http.Get(s.URL() + "/")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET / without a token: %s", res.Status)
		}
	})
	t.Run("theme", func(t *testing.T) {
		before := browsertest.Eval[string](p, `document.documentElement.dataset.theme`)
		browsertest.Eval[any](p, `document.querySelector("header.top button.ghost").click()`)
		p.WaitFor("theme switched", `document.documentElement.dataset.theme !== `+"\""+before+"\"", 5*time.Second)
		bg := browsertest.Eval[string](p, `getComputedStyle(document.body).backgroundColor`)
		if !strings.HasPrefix(bg, "rgb") {
			t.Errorf("background %q", bg)
		}
		p.Clean("theme")
	})
}
