// Package httpapi is the one set of HTTP plumbing every API handler uses:
// the route type with its required permission, JSON answers, the error
// shape of pkg/api, body decoding within limits and query-parameter
// parsing. Packages that serve routes (internal/server, internal/flow)
// return []Route; internal/server mounts them all in one table.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/pkg/api"
)

// Route is one endpoint: a method, a net/http ServeMux path pattern, the
// permission a caller needs and the handler.
type Route struct {
	Method  string // GET, POST, PUT, DELETE
	Pattern string // e.g. /api/v1/flows/{id}
	Perm    auth.Permission
	Handler http.HandlerFunc
	// OnRefused, when set, is called with the status of a request refused
	// before the handler runs (401, 403, 413, 415): a refusal counter.
	OnRefused func(status int)
	// Before, when set on a write, returns the state the request is about
	// to change; the audit log keeps it beside the answer.
	Before func(*http.Request) any
	// MaxBody caps the request body (default DefaultMaxBody); a larger one
	// is refused with 413 whether the handler reads it or not.
	MaxBody int64
	// Scope says how the route honours a caller bound to a scope
	// (per-scope RBAC, auth.Principal.Scope). Admin-only, agent and public
	// routes need none; every other route declares one (TestRouteTable).
	Scope Scoping
}

// Scoping is how a route meets per-scope RBAC.
type Scoping struct {
	Kind ScopeKind
	// Param names the path wildcard (or, when absent from the pattern, the
	// query parameter) that names the scope of ScopeNamed and ScopeChild.
	Param string
}

// ScopeKind: see Scoping.
type ScopeKind uint8

const (
	// ScopeUndeclared: a caller bound to a scope is refused.
	ScopeUndeclared ScopeKind = iota
	// ScopeGlobal: nothing of a scope and nothing of the inventory (the
	// filter schema, the vulnerability database); a scoped caller may
	// read it, never change it.
	ScopeGlobal
	// ScopeFiltered: the handler shows, or changes, only what the caller's
	// scope allows (searches, lists, documents naming their scopes).
	ScopeFiltered
	// ScopeNamed: the request acts on the scope named by Param; the caller
	// needs the permission on that scope (its own or a descendant).
	ScopeNamed
	// ScopeChild: the request changes the definition of the scope named by
	// Param, which only the owner of an ancestor may do: a scoped caller
	// needs the permission on a strict descendant of its scope.
	ScopeChild
	// ScopeServerWide: figures about everyone's data that cannot be
	// narrowed to a scope (flow ingest counters); a scoped caller is
	// refused (403), whatever its role.
	ScopeServerWide
)

// Global, Filtered, ServerWide, Named and Child build a route's Scoping.
var (
	Global     = Scoping{Kind: ScopeGlobal}
	Filtered   = Scoping{Kind: ScopeFiltered}
	ServerWide = Scoping{Kind: ScopeServerWide}
)

// Named is ScopeNamed on param.
func Named(param string) Scoping { return Scoping{Kind: ScopeNamed, Param: param} }

// Child is ScopeChild on param.
func Child(param string) Scoping { return Scoping{Kind: ScopeChild, Param: param} }

// ScopeOf returns the scope name a ScopeNamed or ScopeChild request names.
func (r Route) ScopeOf(req *http.Request) string {
	if strings.Contains(r.Pattern, "{"+r.Scope.Param+"}") || strings.Contains(r.Pattern, "{"+r.Scope.Param+"...}") {
		return req.PathValue(r.Scope.Param)
	}
	return req.URL.Query().Get(r.Scope.Param)
}

// Refuse answers err before the handler ran and tells OnRefused.
func (r Route) Refuse(w http.ResponseWriter, err error) {
	e := AsAPIError(err)
	if r.OnRefused != nil {
		r.OnRefused(e.Status)
	}
	WriteError(w, e)
}

// String is "METHOD PATTERN".
func (r Route) String() string { return r.Method + " " + r.Pattern }

// Guard wraps a route's handler with what the route requires (the server
// authenticates and authorizes here).
type Guard func(Route, http.Handler) http.Handler

// Mount registers every route on mux behind guard. It refuses the whole
// table when one route has no valid permission, no handler, or conflicts
// with another: a route cannot be served without saying who may call it.
func Mount(mux *http.ServeMux, routes []Route, guard Guard) (err error) {
	seen := map[string]bool{}
	for _, rt := range routes {
		switch {
		case rt.Method == "" || !strings.HasPrefix(rt.Pattern, "/"):
			return fmt.Errorf("route %q: want a method and a path starting with /", rt.String())
		case !rt.Perm.Valid():
			return fmt.Errorf("route %s: no valid permission (%q); every route names the permission it requires", rt, rt.Perm)
		case rt.Handler == nil:
			return fmt.Errorf("route %s: no handler", rt)
		case seen[rt.String()]:
			return fmt.Errorf("route %s registered twice", rt)
		}
		seen[rt.String()] = true
	}
	defer func() {
		// ServeMux panics on conflicting patterns: report it as an error.
		if v := recover(); v != nil {
			err = fmt.Errorf("routes: %v", v)
		}
	}()
	for _, rt := range routes {
		var h http.Handler = bounded(rt)
		if guard != nil {
			h = guard(rt, h)
		}
		mux.Handle(rt.String(), h)
	}
	return nil
}

// bounded wraps a route's handler with the rules every write obeys: a
// body of at most MaxBody bytes (413) and, for POST, PUT and PATCH, a JSON
// Content-Type (415), so no cross-origin form or text/plain request can
// write.
func bounded(rt Route) http.Handler {
	limit := rt.MaxBody
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	write := rt.Method == http.MethodPost || rt.Method == http.MethodPut || rt.Method == http.MethodPatch
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if write {
			if err := RequireJSON(r); err != nil {
				rt.Refuse(w, err)
				return
			}
		}
		if r.ContentLength > limit {
			rt.Refuse(w, &api.Error{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("request body of %d bytes; the limit is %d", r.ContentLength, limit)})
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		rt.Handler(w, r)
	})
}

// WriteJSON answers v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) //nolint:errcheck // the client went away
}

// WriteError answers err in the API's error shape. An *api.Error keeps its
// status; a filter error is a 400 with the column at fault; a body over
// its limit is a 413; anything else is a 500 whose text is logged, not
// sent (it may name server internals).
func WriteError(w http.ResponseWriter, err error) {
	WriteJSON(w, ErrorStatus(err), AsAPIError(err))
}

// ErrorStatus is the status WriteError answers err with.
func ErrorStatus(err error) int { return AsAPIError(err).Status }

// AsAPIError maps err onto the error shape (see WriteError).
func AsAPIError(err error) *api.Error {
	var ae *api.Error
	if errors.As(err, &ae) {
		if ae.Status == 0 {
			c := *ae
			c.Status = http.StatusBadRequest
			return &c
		}
		return ae
	}
	var fe *filter.Error
	if errors.As(err, &fe) {
		return &api.Error{Status: http.StatusBadRequest, Message: err.Error(), Position: fe.Pos}
	}
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return &api.Error{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("request body larger than %d bytes", mb.Limit)}
	}
	slog.Error("api: internal error", "err", err)
	return &api.Error{Status: http.StatusInternalServerError, Message: "internal error (logged on the server)"}
}

// DefaultMaxBody bounds request bodies of ordinary JSON endpoints.
const DefaultMaxBody = 1 << 20

// ReadJSON decodes the request body into v: JSON only (415 otherwise), at
// most limit bytes (413; DefaultMaxBody when limit <= 0), no unknown
// fields and nothing after the value (400).
func ReadJSON(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	if err := RequireJSON(r); err != nil {
		return err
	}
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return &api.Error{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("request body larger than %d bytes", limit)}
		}
		if errors.Is(err, io.EOF) {
			return api.BadRequest("", "request body: empty; want a JSON object")
		}
		return api.BadRequest(jsonField(err), "request body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return api.BadRequest("", "request body: data after the JSON value")
	}
	return nil
}

// jsonField names the field of a type error ("" if unknown).
func jsonField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	return ""
}

// RequireJSON refuses a body that does not say it is JSON, so a browser
// form or a text/plain fetch from another origin cannot write (CSRF).
func RequireJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return &api.Error{Status: http.StatusUnsupportedMediaType,
			Message: fmt.Sprintf("Content-Type %q: want application/json", ct)}
	}
	return nil
}

// QueryInt parses query parameter name as an integer in [lo, hi]; absent
// gives def.
func QueryInt(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, api.BadRequest(name, "%s: %q is not an integer from %d to %d", name, v, lo, hi)
	}
	return n, nil
}

// Stopped answers work stopped by its request's context: 503 when the
// server-side deadline passed, 408 when the client went away (nobody reads
// it, the access log and metrics do); other errors are returned unchanged.
func Stopped(err error, deadline time.Duration) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return api.Errorf(http.StatusServiceUnavailable, "stopped after %s; narrow the time range or the filter", deadline)
	case errors.Is(err, context.Canceled):
		return api.Errorf(http.StatusRequestTimeout, "cancelled: the client went away")
	}
	return err
}
