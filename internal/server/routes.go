package server

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"

	"github.com/palisade-dev/palisade/internal/flow/flowapi"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/pkg/api"
)

// Route is one API endpoint with the permission it requires.
type Route = httpapi.Route

// routeSets are the route tables of every file of this package. A file
// that serves an area adds its table from an init function:
//
//	func init() { addRoutes((*Server).policyRoutes) }
//
//	func (s *Server) policyRoutes() []Route {
//		return []Route{
//			{Method: "GET", Pattern: "/api/v1/policies", Perm: "policy.read", Handler: s.listPolicies},
//		}
//	}
//
// Routes() concatenates them; a route without a valid permission makes
// the server refuse to start (and TestRouteTable fail).
var routeSets []func(*Server) []Route

func addRoutes(f func(*Server) []Route) { routeSets = append(routeSets, f) }

func init() {
	addRoutes((*Server).coreRoutes)
	addRoutes(func(s *Server) []Route { return flowapi.ScopedRoutes(s.Flows, s.flowVisibility, s.agentLimits()) })
	addRoutes((*Server).vulnRoutes)
}

// Routes is the server's whole route table.
func (s *Server) Routes() []Route {
	var all []Route
	for _, f := range routeSets {
		all = append(all, f(s)...)
	}
	slices.SortStableFunc(all, func(a, b Route) int {
		return cmp.Or(cmp.Compare(a.Pattern, b.Pattern), cmp.Compare(a.Method, b.Method))
	})
	return all
}

// handler mounts the route table behind authentication and panic recovery.
func (s *Server) handler() (http.Handler, error) {
	mux := http.NewServeMux()
	guard := func(rt Route, h http.Handler) http.Handler { return s.metrics.instrument(rt, s.guard(rt, h)) }
	if err := httpapi.Mount(mux, s.Routes(), guard); err != nil {
		return nil, err
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteError(w, api.NotFound("no API endpoint %s %s", r.Method, r.URL.Path))
	})
	return hostCheck(s.cfg.AllowedHosts, recoverer(mux)), nil
}

// recoverer turns a handler panic into a generic 500 so no request takes
// the server down; the panic and its stack are logged as a bug.
func recoverer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				slog.Error("api: handler panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				httpapi.WriteError(w, api.Errorf(http.StatusInternalServerError, "internal error (logged on the server)"))
			}
		}()
		h.ServeHTTP(w, r)
	})
}
