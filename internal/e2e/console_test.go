package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/palisade-dev/palisade/internal/console/browsertest"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/lab"
	"github.com/palisade-dev/palisade/internal/lab/app"
	"github.com/palisade-dev/palisade/internal/server"
	"github.com/palisade-dev/palisade/internal/vuln"
	"github.com/palisade-dev/palisade/internal/vuln/sample"
)

// TestConsole is the web console's acceptance (issue 12): headless Chromium
// against a server with the lab, its agents and sock-shop traffic running.
// Every page loads without a console error or a failed request; a filter
// search returns the sock-shop workloads; an invalid filter shows its error
// at the right column; a flow's page shows its related flows; the service
// map shows the sock-shop call graph's edges; the vulnerability page lists
// the payment image's CVEs once scanned. Screenshots of every page at
// 1280×800 go to test-artifacts/console/.
func TestConsole(t *testing.T) {
	e := newEnvNamed(t, lab.ModeDirect, "e2econsole")
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	shop, _ := app.ByName("sockshop")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			// Fresh topology each round: the payment rollout replaces a pod.
			if _, err := lab.Traffic(ctx, e.lab.Status(), shop, lab.TrafficOptions{Duration: 5 * time.Second, Rate: 20}); err != nil && ctx.Err() == nil {
				time.Sleep(time.Second)
			}
		}
	}()
	defer func() { stop(); <-done }()
	image := rollVulnerablePayment(t, e.lab, e.server())

	base := e.server().URL()
	b := browsertest.Start(t)
	p := b.NewPage(t)
	p.SignIn(base, e.server().AdminToken())
	p.Clean("sign-in")
	open := func(hash string) { p.Open(base + "/" + hash) }

	t.Run("inventory search returns the sock-shop workloads", func(t *testing.T) {
		open("#/inventory")
		p.WaitFor("inventory table", `document.querySelector("[data-testid=inventory-table]")`, 20*time.Second)
		in := `[data-testid=filter-input]`
		// Completion offers the schema's fields.
		p.Do("type a field prefix", 10*time.Second, chromedp.Click(in), chromedp.SendKeys(in, "namesp"))
		p.WaitFor("completion lists namespace", `[...document.querySelectorAll("[data-testid=suggestions] li")].some(li => li.textContent.endsWith("namespace"))`, 10*time.Second)
		p.Do("accept the completion", 5*time.Second, chromedp.SendKeys(in, kb.Tab))
		p.WaitFor("completed", `document.querySelector("[data-testid=filter-input]").value === "namespace "`, 5*time.Second)
		p.Do("type the rest", 10*time.Second, chromedp.SendKeys(in, "= sock-shop and kind = pod"+kb.Escape+kb.Enter))
		p.WaitFor("search ran", `location.hash.includes("filter=")`, 10*time.Second)
		p.WaitFor("sock-shop pods listed", `document.querySelector("[data-testid=row-count]")?.textContent.includes("of")`, 20*time.Second)
		got := browsertest.Eval[string](p, `[...document.querySelectorAll("[data-testid=inventory-table] tbody tr")].map(r => r.cells[2].textContent).join("\n")`)
		filter := browsertest.Eval[string](p, `document.querySelector("[data-testid=filter-input]").value`)
		if !strings.HasPrefix(filter, "namespace = sock-shop and kind = pod") {
			t.Errorf("filter box holds %q after completion and typing", filter)
		}
		for _, c := range shop.Components {
			if !strings.Contains(got, c.Name+"-") {
				t.Errorf("no %s pod among the results:\n%s", c.Name, got)
			}
		}
		p.Clean("inventory")
		p.Screenshot("inventory")

		// The workload page of the first result.
		p.Do("open a workload", 10*time.Second, chromedp.Click(`[data-testid=inventory-table] tbody tr td:nth-child(3) a`))
		p.WaitFor("workload page", `document.querySelector("main h1")?.textContent.includes("sock-shop/")`, 20*time.Second)
		p.WaitFor("history shown", `document.body.textContent.includes("History")`, 10*time.Second)
		p.Clean("workload page")
		p.Screenshot("workload")
	})

	t.Run("invalid filter shows the error at its column", func(t *testing.T) {
		p.Allow(`HTTP 400: .*/api/v1/inventory\?filter=`)
		p.Allow(`status of 400`)
		bad := "namespace = sock-shop and bogus = 1"
		open("#/inventory?filter=" + url.QueryEscape(bad))
		p.WaitFor("filter error", `document.querySelector("[data-testid=filter-error]")`, 20*time.Second)
		col := browsertest.Eval[string](p, `document.querySelector("[data-testid=filter-error]").dataset.column`)
		want := strings.Index(bad, "bogus") + 1
		if col != fmt.Sprint(want) {
			t.Errorf("error at column %s, want %d (the unknown field)", col, want)
		}
		caret := browsertest.Eval[string](p, `document.querySelector("[data-testid=filter-error] pre").textContent.split("\n")[1]`)
		if caret != strings.Repeat(" ", want-1)+"^" {
			t.Errorf("caret line %q does not point at column %d", caret, want)
		}
		msg := browsertest.Eval[string](p, `document.querySelector("[data-testid=filter-error]").textContent`)
		if !strings.Contains(msg, `unknown field "bogus"`) {
			t.Errorf("error text %q does not name the field", msg)
		}
		if inv := browsertest.Eval[string](p, `document.querySelector("[data-testid=filter-input]").getAttribute("aria-invalid")`); inv != "true" {
			t.Errorf("input aria-invalid=%q", inv)
		}
		p.Clean("invalid filter")
		p.Screenshot("inventory-error")
	})

	// Flows need the agents' first conversation windows and the server's
	// flow window: wait for a ClusterIP flow related to its post-NAT flow.
	var related flow.Flow
	waitFor(t, 90*time.Second, "a sock-shop ClusterIP flow with its related post-NAT flow", func() bool {
		for _, f := range e.search(t, "dst.namespace = sock-shop and related exists", time.Now().Add(-10*time.Minute)) {
			for _, r := range f.Related {
				if r.Reason == flow.ReasonClusterIP {
					related = f
					return true
				}
			}
		}
		return false
	})

	t.Run("flows page", func(t *testing.T) {
		open("#/flows?from=15m&filter=" + url.QueryEscape("dst.namespace = sock-shop"))
		p.WaitFor("flows listed", `document.querySelectorAll("[data-testid=flows-table] tbody tr a[data-testid=flow-link]").length > 0`, 20*time.Second)
		p.WaitFor("histogram drawn", `document.querySelector(".chart canvas")`, 10*time.Second)
		p.Clean("flows")
		p.Screenshot("flows")
	})

	t.Run("flow page shows its related flows", func(t *testing.T) {
		open("#/flow/" + url.PathEscape(related.ID))
		p.WaitFor("related flows drawn", fmt.Sprintf(`document.querySelectorAll("[data-testid=related-flow]").length === %d`, len(related.Related)), 20*time.Second)
		hrefs := browsertest.Eval[[]string](p, `[...document.querySelectorAll("[data-testid=related-flow]")].map(a => decodeURIComponent(a.getAttribute("href")))`)
		for _, r := range related.Related {
			if !slices.ContainsFunc(hrefs, func(h string) bool { return strings.HasSuffix(h, "/"+r.ID) }) {
				t.Errorf("related flow %s (%s) not on the page: %v", r.ID, r.Reason, hrefs)
			}
		}
		points := browsertest.Eval[int](p, `document.querySelectorAll("[data-testid=observation-points] tbody tr").length`)
		if points != len(related.Points) {
			t.Errorf("%d observation points shown, the flow has %d", points, len(related.Points))
		}
		p.Clean("flow page")
		p.Screenshot("flow")
	})

	t.Run("top talkers", func(t *testing.T) {
		// Top reads the stored segments; wait until the server's own Top
		// (not only its search) has the sock-shop flows.
		t0 := time.Now()
		waitFor(t, 2*time.Minute, "flows top by dst.service has entries", func() bool {
			top, err := e.server().Flows.TopWhere("", "dst.service", time.Now().Add(-15*time.Minute), time.Now(), 10)
			return err == nil && len(top) > 0
		})
		t.Logf("flows top had entries %s after the search had flows", time.Since(t0).Round(time.Second))
		open("#/top?by=dst.service&from=15m")
		p.WaitFor("top rows", `document.querySelectorAll("[data-testid=top-table] tbody tr td a").length > 0`, 20*time.Second)
		p.Clean("top")
		p.Screenshot("top")
	})

	t.Run("service map shows the sock-shop call graph", func(t *testing.T) {
		// Every pod-to-pod edge of the call graph must be on the map.
		var want []string
		for _, ed := range shop.Edges {
			if ed.From != app.External && ed.To != app.External {
				want = append(want, ed.From+"->"+ed.To)
			}
		}
		var missing []string
		waitFor(t, 60*time.Second, "every sock-shop edge on the map", func() bool {
			open("#/map?ns=sock-shop&from=15m")
			p.WaitFor("map laid out", `(document.querySelector("[data-testid=service-map]")?.dataset.layoutMs ?? "") !== ""`, 30*time.Second)
			got := browsertest.Eval[[]string](p, `[...document.querySelectorAll("[data-testid=map-edge]")].map(e => e.dataset.source + "->" + e.dataset.target)`)
			missing = missing[:0]
			for _, w := range want {
				if !slices.Contains(got, w) {
					missing = append(missing, w)
				}
			}
			if len(missing) > 0 {
				t.Logf("map edges so far %v; missing %v", got, missing)
			}
			return len(missing) == 0
		})
		p.Clean("map")
		p.Screenshot("map")
		// Click-through: a node's flows.
		p.Do("select on the map by keyboard", 10*time.Second, chromedp.Focus(`[data-testid=service-map]`), chromedp.SendKeys(`[data-testid=service-map]`, kb.ArrowRight))
		p.WaitFor("side panel shows a selection", `document.querySelector(".map-side a.button")`, 10*time.Second)
		p.Do("click through to flows", 10*time.Second, chromedp.Click(`.map-side a.button`))
		p.WaitFor("flows of the selection", `location.hash.startsWith("#/flows") && document.querySelectorAll("[data-testid=flows-table] tbody tr a[data-testid=flow-link]").length > 0`, 20*time.Second)
		p.Clean("map click-through")
	})

	t.Run("vulnerability page lists the payment image's CVEs", func(t *testing.T) {
		waitFor(t, 3*time.Minute, "the payment image scanned", func() bool {
			return len(e.server().Vuln.Vulnerabilities(func(f *vuln.Finding) bool { return slices.Contains(f.CVEs(), "CVE-2022-32149") })) > 0
		})
		open("#/vulnerabilities")
		p.WaitFor("findings listed", `document.querySelectorAll("[data-testid=vuln-table] tbody tr td .mono").length > 0`, 20*time.Second)
		text := browsertest.Eval[string](p, `document.querySelector("[data-testid=vuln-table]").textContent`)
		for _, want := range []string{"CVE-2022-32149", "golang.org/x/text", "golang.org/x/net"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s (of the payment image) not on the page", want)
			}
		}
		if !strings.Contains(text, strings.Split(image, "@")[0]) && !strings.Contains(text, "sock-shop/payment") {
			t.Errorf("the payment image %s is not named on the page", image)
		}
		p.Clean("vulnerabilities")
		p.Screenshot("vulnerabilities")
		p.Do("images tab", 10*time.Second, chromedp.Click(`[role=tab]:nth-child(2)`))
		p.WaitFor("image table", `document.querySelector("[data-testid=image-table]")`, 10*time.Second)
		p.Clean("vulnerabilities by image")
		p.Screenshot("vulnerabilities-images")
	})

	t.Run("policy analysis shows verdicts and drills down to escaped flows", func(t *testing.T) {
		// A scope over sock-shop that allows only front-end → carts: the
		// rest of the call graph is denied by the catch-all but answered
		// (Escaped).
		applyPolicy(t, base, e.server().AdminToken(), `kind: Scope
name: console-shop
filter: namespace = "sock-shop"
catchAll: DENY
---
kind: Policy
scope: console-shop
consumer: label.app = "front-end"
provider: label.app = "carts"
action: ALLOW
ports: ["tcp/80"]
`)
		// Analysis reads stored flows; the search above also saw
		// provisional ones (stored when their dedup window closes): reload
		// until the stored ones are there.
		var permitted, escaped string
		open("#/policies?scope=console-shop&tab=analysis&since=15m")
		waitFor(t, 90*time.Second, "the analysis counts Permitted and Escaped flows", func() bool {
			if permitted != "" {
				// The same URL again would not load anything: reload.
				p.Do("reload", 30*time.Second, chromedp.Reload())
			}
			p.WaitFor("analysis counts", `document.querySelector("[data-testid=analysis-counts] [data-verdict=permitted]")`, 60*time.Second)
			permitted = browsertest.Eval[string](p, `document.querySelector("[data-testid=analysis-counts] [data-verdict=permitted]").dataset.count`)
			escaped = browsertest.Eval[string](p, `document.querySelector("[data-testid=analysis-counts] [data-verdict=escaped]").dataset.count`)
			if permitted == "0" || escaped == "0" {
				t.Logf("analysis counts permitted=%s escaped=%s so far", permitted, escaped)
				return false
			}
			return true
		})
		p.WaitFor("chart drawn", `document.querySelector(".chart canvas")`, 10*time.Second)
		p.Clean("analysis")
		p.Screenshot("policies-analysis")
		// Drill down from the catch-all's Escaped count.
		p.Do("drill down", 10*time.Second, chromedp.Click(`[data-testid=analysis-rules] a[data-testid=drill-escaped]`))
		p.WaitFor("escaped flows listed", `document.querySelectorAll("[data-testid=drill-flows] tbody tr a[data-testid=flow-link]").length > 0`, 60*time.Second)
		rows := browsertest.Eval[[]string](p, `[...document.querySelectorAll("[data-testid=drill-flows] tbody tr")].map(r => r.cells[2].textContent + " -> " + r.cells[3].textContent)`)
		var ordersToPayment bool
		for _, r := range rows {
			if strings.Contains(r, "/front-end-") && strings.Contains(r, "/carts-") {
				t.Errorf("an allowed call (front-end → carts) among the escaped flows: %s", r)
			}
			if strings.Contains(r, "/orders-") && strings.Contains(r, "/payment-") {
				ordersToPayment = true
			}
		}
		if !ordersToPayment {
			t.Errorf("the denied call orders → payment is not among the escaped flows:\n%s", strings.Join(rows, "\n"))
		}
		p.Clean("analysis drill-down")
		p.Screenshot("policies-drilldown")
	})

	// The newest version of console-shop (what the analysis above read).
	shopVersion := func(t *testing.T) string {
		t.Helper()
		var sv server.ScopeView
		e.api(t, "GET", "/scopes/console-shop", nil, nil, &sv)
		if len(sv.Versions) == 0 {
			t.Fatal("console-shop has no version")
		}
		return sv.Versions[len(sv.Versions)-1].Name
	}

	t.Run("service map colours the calls by the analysis verdict", func(t *testing.T) {
		v := shopVersion(t)
		open("#/map?ns=sock-shop&from=15m")
		p.WaitFor("map laid out", `(document.querySelector("[data-testid=service-map]")?.dataset.layoutMs ?? "") !== ""`, 30*time.Second)
		// Choose the version in the map's policy menu.
		browsertest.Eval[any](p, fmt.Sprintf(`(() => { const s = document.querySelector("[data-testid=map-policy]"); s.value = %q; s.dispatchEvent(new Event("change", {bubbles: true})); })()`, "console-shop@"+v))
		p.WaitFor("edges coloured", `Number(document.querySelector("[data-testid=service-map]")?.dataset.coloured || 0) > 0 && document.querySelector("[data-testid=verdict-legend]") !== null`, 60*time.Second)
		verdicts := browsertest.Eval[map[string]string](p, `Object.fromEntries([...document.querySelectorAll("[data-testid=edge-verdict]")].map(e => [e.dataset.source + "->" + e.dataset.target, e.dataset.verdict]))`)
		for edge, want := range map[string]string{"front-end->carts": "permitted", "orders->payment": "escaped"} {
			if verdicts[edge] != want {
				t.Errorf("edge %s coloured %q, want %q (all: %v)", edge, verdicts[edge], want, verdicts)
			}
		}
		legend := browsertest.Eval[map[string]string](p, `Object.fromEntries([...document.querySelectorAll("[data-testid=verdict-legend] li")].map(l => [l.dataset.verdict, l.dataset.count]))`)
		if legend["permitted"] == "0" || legend["escaped"] == "0" {
			t.Errorf("legend counts %v, want permitted and escaped edges", legend)
		}
		p.Clean("map by verdict")
		p.Screenshot("map-verdicts")
	})

	t.Run("workload page lists the policies that apply to it", func(t *testing.T) {
		open("#/inventory?filter=" + url.QueryEscape(`namespace = "sock-shop" and label.app = "carts" and kind = pod`))
		p.WaitFor("a carts pod", `document.querySelector("[data-testid=inventory-table] tbody tr td:nth-child(3) a")`, 20*time.Second)
		p.Do("open it", 10*time.Second, chromedp.Click(`[data-testid=inventory-table] tbody tr td:nth-child(3) a`))
		// Intent 0 of console-shop allows front-end → carts: carts is its provider.
		p.WaitFor("the applying intent listed", `[...document.querySelectorAll("[data-testid=applied-side]")].some(x => x.dataset.rule.startsWith("console-shop@") && x.dataset.rule.endsWith("#0") && x.dataset.side === "provider")`, 20*time.Second)
		p.Clean("workload policies")
		p.Screenshot("workload-policies")
	})

	t.Run("enforcement page switches a scope to enforce", func(t *testing.T) {
		open("#/enforcement")
		p.WaitFor("scopes listed", `[...document.querySelectorAll("[data-testid=enforcement-scopes] tbody tr")].some(r => r.textContent.includes("console-shop"))`, 20*time.Second)
		browsertest.Eval[any](p, `(() => { const s = [...document.querySelectorAll("[data-testid=enforcement-scopes] tbody tr")].find(r => r.textContent.includes("console-shop")).querySelector("select"); s.value = "enforce"; s.dispatchEvent(new Event("change", {bubbles: true})); })()`)
		p.WaitFor("enforced", `[...document.querySelectorAll("[data-testid=enforcement-scopes] tbody tr")].find(r => r.textContent.includes("console-shop"))?.querySelector("select").value === "enforce" && document.querySelector("[role=status]")?.textContent.includes("enforce")`, 20*time.Second)
		p.Clean("enforcement")
		p.Screenshot("enforcement")
		// Back to analysis, so nothing is programmed after the test.
		browsertest.Eval[any](p, `(() => { const s = [...document.querySelectorAll("[data-testid=enforcement-scopes] tbody tr")].find(r => r.textContent.includes("console-shop")).querySelector("select"); s.value = "analyze"; s.dispatchEvent(new Event("change", {bubbles: true})); })()`)
		p.WaitFor("analyze again", `document.querySelector("[role=status]")?.textContent.includes("analyze")`, 20*time.Second)
		p.Clean("enforcement back to analyze")
	})

	t.Run("agents page switches a node's mode", func(t *testing.T) {
		open("#/agents")
		p.WaitFor("both agents", fmt.Sprintf(`document.querySelectorAll("[data-testid=agents-table] tbody tr").length === %d`, len(e.st.Nodes)), 20*time.Second)
		node := browsertest.Eval[string](p, `document.querySelector("[data-testid=agents-table] tbody tr td strong").textContent`)
		p.Do("switch to detailed", 10*time.Second, chromedp.SetValue(`[data-testid=agent-mode]`, "detailed"))
		browsertest.Eval[any](p, `document.querySelector("[data-testid=agent-mode]").dispatchEvent(new Event("change", {bubbles: true}))`)
		waitFor(t, 10*time.Second, node+" in detailed mode", func() bool { return e.server().Flows.Agents.Config(node).Mode == flow.DetailedMode })
		p.Screenshot("agents")
		if err := e.server().Flows.Agents.SetConfig(node, flow.AgentConfig{Mode: flow.ConversationMode}); err != nil {
			t.Fatal(err)
		}
		p.Clean("agents")
	})

	t.Run("compliance alert acknowledged", func(t *testing.T) {
		// With console-shop's version enforced (compliance only: the scope
		// stays in analyze mode, nothing is programmed), the denied but
		// answered sock-shop calls raise Escaped alerts.
		e.api(t, "POST", "/scopes/console-shop/versions/"+shopVersion(t)+"/enforce", nil, struct{}{}, nil)
		var open1 []map[string]any
		waitFor(t, 2*time.Minute, "an open compliance alert", func() bool {
			open1 = nil
			e.api(t, "GET", "/compliance/alerts", nil, nil, &open1)
			return len(open1) > 0
		})
		open("#/policies")
		p.WaitFor("alerts listed", `document.querySelector("[data-testid=alerts-table] [data-testid=ack]")`, 20*time.Second)
		id := browsertest.Eval[string](p, `document.querySelector("[data-testid=alerts-table] [data-testid=ack]").dataset.alert`)
		p.Screenshot("alerts")
		p.Do("acknowledge", 10*time.Second, chromedp.Click(fmt.Sprintf(`[data-testid=ack][data-alert=%q]`, id)))
		p.WaitFor("shown as acknowledged", fmt.Sprintf(`document.querySelector('[data-testid=acked][data-alert=%q]') !== null`, id), 20*time.Second)
		var all []map[string]any
		e.api(t, "GET", "/compliance/alerts", url.Values{"all": {"true"}}, nil, &all)
		acked := false
		for _, a := range all {
			if a["id"] == id {
				acked = a["acked"] == true
			}
		}
		if !acked {
			t.Errorf("alert %s is not acknowledged on the server", id)
		}
		p.Clean("alert acknowledged")
	})

	t.Run("discovery in the scope page, saved as a version", func(t *testing.T) {
		var before server.ScopeView
		e.api(t, "GET", "/scopes/console-shop", nil, nil, &before)
		open("#/policies?scope=console-shop&tab=discovery")
		p.WaitFor("discovery form", `document.querySelector("[data-testid=discover-start]")`, 20*time.Second)
		browsertest.Eval[any](p, `(() => { window.sawProgress = false; new MutationObserver(() => { if (document.querySelector("[data-testid=discover-progress]")) window.sawProgress = true; }).observe(document.body, {subtree: true, childList: true, attributes: true});
			const s = document.querySelector("[data-testid=discover-since]"); s.value = "15m"; s.dispatchEvent(new Event("change", {bubbles: true})); })()`)
		p.Do("discover", 10*time.Second, chromedp.Click(`[data-testid=discover-start]`))
		p.WaitFor("discovered intents", `document.querySelectorAll("[data-testid=discover-rules] tbody tr [data-testid=discover-samples] a").length > 0`, 3*time.Minute)
		if !browsertest.Eval[bool](p, `window.sawProgress`) {
			t.Error("no progress shown while the discovery ran")
		}
		text := browsertest.Eval[string](p, `document.querySelector("[data-testid=discover-rules]").textContent`)
		for _, want := range []string{"carts", "payment"} {
			if !strings.Contains(text, want) {
				t.Errorf("no discovered intent names %s:\n%s", want, text)
			}
		}
		rules := browsertest.Eval[int](p, `document.querySelectorAll("[data-testid=discover-rules] tbody tr").length`)
		pageRows := browsertest.Eval[string](p, `document.querySelector("[data-testid=discover-rules] [data-testid=row-count]").textContent`)
		p.Screenshot("discovery")
		p.Do("save as version", 10*time.Second, chromedp.Click(`[data-testid=discover-save]`))
		p.WaitFor("saved", `document.querySelector("[data-testid=discover-saved]")?.textContent.startsWith("Saved as")`, 20*time.Second)
		var after server.ScopeView
		e.api(t, "GET", "/scopes/console-shop", nil, nil, &after)
		if len(after.Versions) != len(before.Versions)+1 {
			t.Fatalf("versions %d → %d, want one more", len(before.Versions), len(after.Versions))
		}
		if nv := after.Versions[len(after.Versions)-1]; nv.Policies < rules || nv.State != "draft" {
			t.Errorf("new version %+v: want a draft with the %d discovered intents (%s)", nv, rules, pageRows)
		}
		p.Clean("discovery")
	})

	t.Run("registry credentials form", func(t *testing.T) {
		open("#/vulnerabilities?view=registries")
		p.WaitFor("registries listed", `document.querySelector("[data-testid=registries-table] [data-testid=set-credentials]")`, 20*time.Second)
		reg := browsertest.Eval[string](p, `document.querySelector("[data-testid=set-credentials]").dataset.registry`)
		p.Do("fill the form", 10*time.Second,
			chromedp.Click(fmt.Sprintf(`[data-testid=set-credentials][data-registry=%q]`, reg)),
			chromedp.WaitVisible(`[data-testid=cred-user]`),
			chromedp.SendKeys(`[data-testid=cred-user]`, "console-e2e"),
			chromedp.SendKeys(`[data-testid=cred-password]`, "not-a-real-secret"),
			chromedp.Click(`[data-testid=cred-store]`))
		p.WaitFor("stored", `document.querySelector("[data-testid=cred-message]")?.textContent.includes("stored")`, 20*time.Second)
		if v := browsertest.Eval[string](p, `document.querySelector("[data-testid=cred-password]")?.value ?? ""`); v != "" {
			t.Errorf("the password stays in the page after storing: %q", v)
		}
		var regs []map[string]any
		e.api(t, "GET", "/registries", nil, nil, &regs)
		stored := false
		for _, r := range regs {
			if r["name"] == reg {
				stored = r["hasCredentials"] == true
			}
		}
		if !stored {
			t.Errorf("registry %s has no credentials on the server: %v", reg, regs)
		}
		p.Clean("registry credentials")
		p.Screenshot("registries")
	})

	t.Run("vulnerability database import time", func(t *testing.T) {
		open("#/vulnerabilities")
		p.WaitFor("database status", `document.querySelector("[data-testid=vulndb-status]")?.dataset.imported`, 20*time.Second)
		imported := browsertest.Eval[string](p, `document.querySelector("[data-testid=vulndb-status]").dataset.imported`)
		at, err := time.Parse(time.RFC3339Nano, imported)
		if err != nil || time.Since(at) > time.Hour || time.Since(at) < 0 {
			t.Errorf("import time %q (%v), want the import this test made", imported, err)
		}
		if n := browsertest.Eval[string](p, `document.querySelector("[data-testid=vulndb-status]").dataset.advisories`); n == "0" {
			t.Error("the database shows no advisory")
		}
		p.Clean("vulnerability database")
	})

	t.Run("dark theme", func(t *testing.T) {
		open("#/map?ns=sock-shop&from=15m")
		browsertest.Eval[any](p, `document.querySelector("header.top button.ghost[aria-label*=dark]")?.click()`)
		p.WaitFor("dark", `document.documentElement.dataset.theme === "dark"`, 5*time.Second)
		p.WaitFor("map laid out", `(document.querySelector("[data-testid=service-map]")?.dataset.layoutMs ?? "") !== ""`, 30*time.Second)
		p.Screenshot("map-dark")
		open("#/inventory?filter=" + url.QueryEscape("namespace = sock-shop"))
		p.WaitFor("inventory table", `document.querySelector("[data-testid=inventory-table] tbody tr td a")`, 20*time.Second)
		p.Screenshot("inventory-dark")
		p.Clean("dark theme")
	})
}

// applyPolicy applies YAML documents through the public API.
func applyPolicy(t *testing.T, base, token, yaml string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"files": []map[string]string{{"name": "console.yaml", "content": yaml}}})
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/policy/apply", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("apply: %s: %s", res.Status, out)
	}
}

// rollVulnerablePayment serves a loopback registry with a Go program linking
// vulnerable golang.org/x/net and x/text, imports the Go vulnerability
// database and rolls the lab's payment Deployment onto that image; the
// scanner pulls and matches it in the background. It returns the image.
func rollVulnerablePayment(t *testing.T, l *lab.Lab, s *server.Server) string {
	t.Helper()
	ctx := context.Background()
	host, stop, err := sample.Registry()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	exe, err := sample.GoApp(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img, err := sample.Image("app/payment", exe)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := sample.Push(img, host+"/sock-shop/payment:vulnerable")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sample.GoVulnDB()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Vuln.ImportDB(ctx, db, nil); err != nil {
		t.Fatal(err)
	}
	deploys := l.Client().AppsV1().Deployments(l.Namespace())
	// Retry on a conflict with the deployment controller's own updates.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		d, err := deploys.Get(ctx, "payment", metav1.GetOptions{})
		if err != nil {
			return err
		}
		d.Spec.Template.Spec.Containers[0].Image = ref
		_, err = deploys.Update(ctx, d, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ref
}
