package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/auth"
)

// publicRoutes are the only routes anyone may call without a token.
var publicRoutes = map[string]bool{
	"GET /healthz": true,
}

// TestRouteTable walks every route the server serves: each names a valid
// permission, only the liveness probe (and the console's files) are
// public, admin-only areas stay admin-only, and every route is really
// mounted (a request reaches something other than the API's 404).
func TestRouteTable(t *testing.T) {
	s, err := Start(context.Background(), Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	routes := s.Routes()
	if len(routes) < 20 {
		t.Fatalf("route table has %d routes", len(routes))
	}
	for _, rt := range routes {
		t.Run(rt.String(), func(t *testing.T) {
			if !rt.Perm.Valid() {
				t.Fatalf("permission %q is not valid", rt.Perm)
			}
			if rt.Perm == auth.Public && !publicRoutes[rt.String()] && !isConsoleAsset(rt) {
				t.Fatalf("public route not in the list of public routes")
			}
			if strings.Contains(rt.Pattern, "/credentials") || strings.Contains(rt.Pattern, "/vulndb/") {
				if rt.Perm.Area() != "admin" {
					t.Fatalf("admin-only route with permission %q", rt.Perm)
				}
			}
			if rt.Method != "GET" && rt.Perm.Verb() == "read" {
				t.Fatalf("a %s route with a read permission", rt.Method)
			}
			path := strings.NewReplacer("{id...}", "x/y", "{node}", "n1", "{name}", "n", "{id}", "x", "{digest}", "sha256:00").Replace(rt.Pattern)
			// Streams never end: read what comes within a moment.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, rt.Method, s.URL()+path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusMethodNotAllowed || strings.Contains(string(body), "no API endpoint") {
				t.Fatalf("%s %s: %s %s: not mounted", rt.Method, path, resp.Status, body)
			}
		})
	}
}

// isConsoleAsset: the web console's static files (GET only, not under /api/).
func isConsoleAsset(rt Route) bool {
	return rt.Method == "GET" && !strings.HasPrefix(rt.Pattern, "/api/") && rt.Pattern != "/metrics"
}
