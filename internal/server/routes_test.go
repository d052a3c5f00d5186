package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/pkg/client"
)

// publicRoutes are the only routes anyone may call without a token.
var publicRoutes = map[string]bool{
	"GET /healthz": true,
}

// TestRouteTable walks every route the server serves, black-box against
// a running server: each names a valid permission; only the liveness
// probe and the console's files are public; every other route answers 401
// without a token, with a malformed one and with a revoked one, 403 to a
// viewer on every write and admin-only read, 403 to a metrics-reader, and
// is really mounted for the admin. A new route without a permission makes
// the server refuse to start, so it fails here too.
func TestRouteTable(t *testing.T) {
	s, err := Start(context.Background(), Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	admin := s.Client("")
	ctx := context.Background()
	viewer, err := admin.CreateToken(ctx, "viewer", "viewer")
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := admin.CreateToken(ctx, "scraper", "metrics-reader")
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := admin.CreateToken(ctx, "gone", "admin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RevokeToken(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	routes := s.Routes()
	if len(routes) < 20 {
		t.Fatalf("route table has %d routes", len(routes))
	}
	call := func(t *testing.T, rt Route, token string) (int, string) {
		t.Helper()
		path := wildcard.ReplaceAllStringFunc(rt.Pattern, func(w string) string {
			switch w {
			case "{id...}":
				return "x/y"
			case "{node}":
				return "n1"
			case "{digest}":
				return "sha256:00"
			case "{$}":
				return ""
			}
			return "x"
		})
		// Streams never end: read what comes within a moment.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var body io.Reader
		if rt.Method != "GET" && rt.Method != "DELETE" {
			body = strings.NewReader("{}")
		}
		req, _ := http.NewRequestWithContext(ctx, rt.Method, s.URL()+path, body)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := s.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	for _, rt := range routes {
		t.Run(rt.String(), func(t *testing.T) {
			if !rt.Perm.Valid() {
				t.Fatalf("permission %q is not valid", rt.Perm)
			}
			if rt.Perm == auth.Public {
				if !publicRoutes[rt.String()] && !isConsoleAsset(rt) {
					t.Fatalf("public route not in the list of public routes")
				}
				if code, _ := call(t, rt, ""); code == 401 || code == 403 {
					t.Fatalf("public route answers %d without a token", code)
				}
				return
			}
			if strings.Contains(rt.Pattern, "/credentials") || strings.Contains(rt.Pattern, "/vulndb/") || strings.Contains(rt.Pattern, "/tokens") {
				if rt.Perm.Area() != "admin" {
					t.Fatalf("admin-only route with permission %q", rt.Perm)
				}
			}
			if rt.Method != "GET" && rt.Perm.Verb() == "read" {
				t.Fatalf("a %s route with a read permission", rt.Method)
			}
			for _, c := range []struct{ who, token string }{
				{"no token", ""}, {"malformed token", "hello"}, {"revoked token", revoked.Secret},
				{"agent-looking token", "pal_0123456789abcdef_nope"},
			} {
				if code, body := call(t, rt, c.token); code != 401 || !strings.Contains(body, `"error"`) {
					t.Errorf("%s: %d %s, want 401", c.who, code, body)
				}
			}
			viewerMay := rt.Method == "GET" && rt.Perm.Verb() == "read"
			if code, body := call(t, rt, viewer.Secret); viewerMay == (code == 403) || code == 401 {
				t.Errorf("viewer: %d %s", code, body)
			}
			if code, body := call(t, rt, metrics.Secret); (rt.Perm == auth.MetricsScrape) == (code == 403) || code == 401 {
				t.Errorf("metrics-reader: %d %s", code, body)
			}
			code, body := call(t, rt, s.AdminToken())
			if code == 401 || code == 403 || code == http.StatusMethodNotAllowed || strings.Contains(body, "no API endpoint") {
				t.Fatalf("admin: %d %s: not mounted or refused", code, body)
			}
		})
	}
	// Every write by a person is in the audit log (the admin's calls
	// above; refused ones never reached a handler and change nothing).
	recs, err := admin.Audit(ctx, client.AuditQuery{Who: "admin", Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	logged := map[string]bool{}
	for _, r := range recs {
		logged[r.Action] = true
	}
	for _, rt := range routes {
		if rt.Method != "GET" && rt.Perm != auth.AgentReport && !logged[rt.String()] {
			t.Errorf("%s is not audited", rt)
		}
	}
}

var wildcard = regexp.MustCompile(`\{[^}]*\}`)

// isConsoleAsset: the web console's static files (GET only, not under /api/).
func isConsoleAsset(rt Route) bool {
	return rt.Method == "GET" && !strings.HasPrefix(rt.Pattern, "/api/") && rt.Pattern != "/metrics"
}

// A panicking handler answers a generic 500 (the panic is logged with its
// stack, not sent) and the server goes on.
func TestRecoverer(t *testing.T) {
	h := recoverer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("secret internal detail") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/x", nil))
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "secret") || !strings.Contains(rec.Body.String(), `"error"`) {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

// Only names of the server pass the Host check.
func TestHostCheck(t *testing.T) {
	h := hostCheck([]string{"palisade.corp"}, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }))
	for host, want := range map[string]int{
		"127.0.0.1:7070": 204, "[::1]:7070": 204, "10.1.2.3": 204, "localhost:7070": 204, "palisade.corp:443": 204,
		"PALISADE.CORP.": 204, "evil.example": 421, "127.0.0.1.evil.example": 421, "": 421,
	} {
		req := httptest.NewRequest("GET", "/api/v1/status", nil)
		req.Host = host
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Host %q: %d, want %d", host, rec.Code, want)
		}
	}
}
