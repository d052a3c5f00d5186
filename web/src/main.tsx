import "./style.css";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, onUnauthorized, session, Status } from "./api";
import { href, useRoute } from "./router";
import { InventoryPage } from "./pages/inventory";
import { WorkloadPage } from "./pages/workload";
import { FlowsPage } from "./pages/flows";
import { FlowPage } from "./pages/flow";
import { TopPage } from "./pages/top";
import { MapPage } from "./pages/map";
import { VulnsPage } from "./pages/vulns";
import { AgentsPage } from "./pages/agents";
import { SignIn } from "./pages/signin";
import { PoliciesPage } from "./pages/policies";
import { EnforcementPage } from "./pages/enforcement";

const NAV: [string, string][] = [
  ["inventory", "Inventory"],
  ["flows", "Flows"],
  ["top", "Top talkers"],
  ["map", "Service map"],
  ["policies", "Policies"],
  ["enforcement", "Enforcement"],
  ["vulnerabilities", "Vulnerabilities"],
  ["agents", "Agents"],
];

type Theme = "dark" | "light";
function initialTheme(): Theme {
  const t = localStorage.getItem("palisade.theme");
  if (t === "dark" || t === "light") return t;
  return matchMedia("(prefers-color-scheme: light)").matches ? "light" : "dark";
}

function App() {
  const route = useRoute();
  const [theme, setTheme] = useState<Theme>(initialTheme);
  const [needsToken, setNeedsToken] = useState(false);
  const [status, setStatus] = useState<Status>();
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem("palisade.theme", theme); // a preference, not a secret
  }, [theme]);
  useEffect(() => onUnauthorized(() => setNeedsToken(true)), []);
  const onSignIn = route.path[0] === "signin";
  useEffect(() => {
    if (!needsToken && !onSignIn) api<Status>("/api/v1/status").then(setStatus, () => {});
  }, [needsToken, onSignIn]);
  // "/" focuses the page's filter box, as in most consoles.
  useEffect(() => {
    const on = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement;
      if (e.key === "/" && !["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName)) {
        const f = document.querySelector<HTMLInputElement>("[data-testid=filter-input]");
        if (f) {
          e.preventDefault();
          f.focus();
        }
      }
    };
    addEventListener("keydown", on);
    return () => removeEventListener("keydown", on);
  }, []);

  const page = route.path[0] ?? "inventory";
  let body;
  if (needsToken || page === "signin") {
    body = (
      <SignIn
        onDone={() => {
          setNeedsToken(false);
          if (page === "signin") location.hash = "#/inventory";
        }}
      />
    );
  } else {
    switch (page) {
      case "inventory":
        body = <InventoryPage route={route} />;
        break;
      case "workload":
        body = <WorkloadPage id={route.path.slice(1).join("/")} />;
        break;
      case "flows":
        body = <FlowsPage route={route} />;
        break;
      case "flow":
        body = <FlowPage id={route.path.slice(1).join("/")} />;
        break;
      case "top":
        body = <TopPage route={route} />;
        break;
      case "map":
        body = <MapPage route={route} />;
        break;
      case "policies":
        body = <PoliciesPage route={route} />;
        break;
      case "enforcement":
        body = <EnforcementPage />;
        break;
      case "vulnerabilities":
        body = <VulnsPage route={route} />;
        break;
      case "agents":
        body = <AgentsPage />;
        break;
      default:
        body = (
          <div class="card">
            <h1>Not found</h1>
            <p>
              No page <code>{page}</code>. <a href="#/inventory">Go to the inventory</a>.
            </p>
          </div>
        );
    }
  }
  const current = page === "workload" ? "inventory" : page === "flow" ? "flows" : page;
  const connState = status?.connectors?.map((c) => c.state) ?? [];
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), document.getElementById("main")?.focus())}>
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="#/inventory" aria-label="Palisade home">
          <svg viewBox="0 0 24 24" width="22" height="22" aria-hidden="true">
            <path d="M4 21V7l2-3 2 3v14M10 21V7l2-3 2 3v14M16 21V7l2-3 2 3v14M3 11h18M3 16h18" fill="none" stroke="currentColor" stroke-width="1.6" />
          </svg>
          Palisade
        </a>
        <nav aria-label="pages">
          {NAV.map(([k, t]) => (
            <a href={href([k])} aria-current={current === k ? "page" : undefined}>
              {t}
            </a>
          ))}
        </nav>
        <span class="spacer" />
        {status && (
          <span class="status" title={`version ${status.version}`} data-testid="server-status">
            <span class={"dot " + (connState.length && connState.every((s) => s === "synced") ? "ok" : connState.some((s) => s === "degraded") ? "bad" : "warn")} aria-hidden="true" />
            {status.workloads.toLocaleString("en-US")} workloads · {connState.join(", ") || "no clusters"}
          </span>
        )}
        <button class="ghost" onClick={() => setTheme(theme === "dark" ? "light" : "dark")} aria-label={`switch to the ${theme === "dark" ? "light" : "dark"} theme`}>
          {theme === "dark" ? "☀" : "☾"}
        </button>
        {session.token() && (
          <button
            class="ghost"
            onClick={() => {
              session.clear();
              setNeedsToken(true);
            }}
          >
            Sign out
          </button>
        )}
      </header>
      <main id="main" tabIndex={-1}>
        {body}
      </main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
