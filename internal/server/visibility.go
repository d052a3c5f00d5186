package server

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/flow/flowapi"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
)

// visibility is what one request may see under per-scope RBAC. It is built
// once per request from the caller (visibilityOf) and every handler that
// lists, searches or reads by ID asks it, so the rule lives here only:
//
//   - a caller without a scope binding sees everything;
//   - a caller bound to scope S sees S and its descendants, the workloads
//     that are members of S (its filter and every ancestor's match), the
//     flows with either end a member at the flow's own time (resolved
//     through the inventory history, as analysis resolves them), the
//     findings and images of member workloads, and the policy objects,
//     analysis, alerts, enforcement and discovery of S and its descendants,
//     the agents of the nodes running a member (or that are members), the
//     saved filters S or a descendant owns, and status counts over all this;
//   - a scope that no longer exists shows nothing (fail closed).
//
// It is not safe for concurrent use (one per request).
type visibility struct {
	all   bool
	scope string
	authz *auth.Authorizer
	// chain is the filters from the top scope down to scope: a member
	// matches them all. nil with all false: the scope is gone.
	chain []*filter.Filter
	res   flow.Resolver
	inv   *inventory.Inventory
	// memo caches membership by workload version (versions are
	// immutable) and by address for addresses no workload held.
	memo   map[*inventory.Workload]bool
	memoIP map[string]bool
	ids    map[string]bool // visible workload IDs, taken on first use
	nodes  map[string]bool // nodes running a visible workload, taken on first use
}

var _ flowapi.Visibility = (*visibility)(nil)

// everything is the visibility of an unbound caller.
var everything = &visibility{all: true}

// visibilityOf returns the visibility of r's caller.
func (s *Server) visibilityOf(r *http.Request) *visibility {
	p, _ := auth.FromContext(r.Context())
	return s.visibilityFor(p)
}

// visibilityFor returns what p may see.
func (s *Server) visibilityFor(p auth.Principal) *visibility {
	if !p.Scoped() {
		return everything
	}
	v := &visibility{scope: p.Scope, authz: s.authz, res: s.Inventory, inv: s.Inventory,
		memo: map[*inventory.Workload]bool{}, memoIP: map[string]bool{}}
	path, ok := s.scopePath(p.Scope)
	if !ok {
		return v
	}
	for _, name := range path {
		sc, ok := s.policy.repo.Scope(name)
		if !ok {
			return v
		}
		f, err := filter.Parse(sc.Filter, inventory.Schema)
		if err != nil {
			return &visibility{scope: p.Scope} // a stored filter that no longer parses: nothing
		}
		v.chain = append(v.chain, f)
	}
	return v
}

// scopePath is the ancestry of a scope, from the top down, itself last
// (auth.Ancestry over the policy repository).
func (s *Server) scopePath(name string) ([]string, bool) {
	var path []string
	for n := name; n != ""; {
		sc, ok := s.policy.repo.Scope(n)
		if !ok || len(path) > 64 {
			return nil, false
		}
		path = append(path, n)
		n = sc.Parent
	}
	slices.Reverse(path)
	return path, true
}

// All reports whether nothing is hidden.
func (v *visibility) All() bool { return v.all }

// Scope reports whether the caller may see the scope named (its own or a
// descendant).
func (v *visibility) Scope(name string) bool {
	return v.all || v.authz.Within(name, v.scope)
}

// member reports whether rec is a member of the caller's scope.
func (v *visibility) member(rec filter.Record) bool {
	if v.chain == nil {
		return false
	}
	for _, f := range v.chain {
		if !f.Match(rec) {
			return false
		}
	}
	return true
}

// Workload reports whether a workload version is visible.
func (v *visibility) Workload(w *inventory.Workload) bool {
	if v.all {
		return true
	}
	if w == nil {
		return false
	}
	m, ok := v.memo[w]
	if !ok {
		m = v.member(inventory.Record{W: w})
		v.memo[w] = m
	}
	return m
}

// WorkloadID reports whether the workload with that ID is visible now.
// The visible IDs are taken once per request, so this takes no inventory
// lock and may be called under another package's lock (the scanner's).
func (v *visibility) WorkloadID(id string) bool {
	if v.all {
		return true
	}
	v.takeIDs()
	return v.ids[id]
}

// takeIDs takes the visible workload IDs (once); call it before handing
// WorkloadID to code that runs under another lock.
func (v *visibility) takeIDs() {
	if v.all || v.ids != nil {
		return
	}
	v.ids = map[string]bool{}
	if v.chain == nil {
		return // the scope is gone: nothing
	}
	for _, w := range v.inv.Search(nil, inventory.SearchOptions{IncludeDeleted: true, Keep: v.Workload}) {
		v.ids[w.ID] = true
	}
}

// Node reports whether the agent of a node is visible: the node runs a
// visible workload now, or is itself a member of the scope (a node
// workload its filters match). Taken once per request, like WorkloadID.
func (v *visibility) Node(name string) bool {
	if v.all {
		return true
	}
	if v.nodes == nil {
		v.nodes = map[string]bool{}
		if v.chain == nil {
			return false // the scope is gone: nothing
		}
		for _, w := range v.inv.Search(nil, inventory.SearchOptions{Keep: v.Workload}) {
			switch {
			case w.Kind == inventory.KindNode:
				v.nodes[w.Name] = true
			case w.Node != "":
				v.nodes[w.Node] = true
			}
		}
	}
	return v.nodes[name]
}

// Addr reports whether the holder of ip at t is visible; an address no
// workload held is visible when the scope's filters match it by address
// (e.g. `ip in 203.0.113.0/24`), as policy decides such peers.
func (v *visibility) Addr(ip string, t time.Time) bool {
	if v.all {
		return true
	}
	if w, ok := v.res.WorkloadAt(ip, t); ok {
		return v.Workload(w)
	}
	m, ok := v.memoIP[ip]
	if !ok {
		if _, err := netip.ParseAddr(ip); err == nil {
			m = v.member(addrRecord{ip})
		}
		if len(v.memoIP) < 1<<16 {
			v.memoIP[ip] = m
		}
	}
	return m
}

// Flow reports whether either end of f was visible at the flow's start.
func (v *visibility) Flow(f *flow.Flow) bool {
	return v.all || v.Addr(f.Src.IP, f.Start) || v.Addr(f.Dst.IP, f.Start)
}

// WorkloadIDs keeps the visible IDs of ids (all of them for an unbound
// caller).
func (v *visibility) WorkloadIDs(ids []string) []string {
	if v.all {
		return ids
	}
	var out []string
	for _, id := range ids {
		if v.WorkloadID(id) {
			out = append(out, id)
		}
	}
	return out
}

// Ruled reports whether a rule reference belongs to a visible scope.
func (v *visibility) Ruled(r policy.RuleRef) bool { return r.Scope == "" || v.Scope(r.Scope) }

// addrRecord is the filter record of an address no workload held (the
// policy evaluator's view of such a peer).
type addrRecord struct{ ip string }

func (r addrRecord) Field(name string) (filter.Value, bool) {
	if name == "ip" {
		return filter.Value{Strs: []string{r.ip}, Set: true}, true
	}
	return filter.Value{}, false
}

// flowVisibility is the flow API's view of visibilityOf.
func (s *Server) flowVisibility(r *http.Request) flowapi.Visibility { return s.visibilityOf(r) }

// authorizeScope applies a route's Scoping to a caller bound to a scope
// (callers without one pass): the guard calls it after the role check.
func (s *Server) authorizeScope(r *http.Request, rt Route, p auth.Principal) error {
	if !p.Scoped() || rt.Perm == auth.Public {
		return nil
	}
	deny := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s (role %s on scope %s): %s", auth.ErrForbidden, p, p.Role, p.Scope, fmt.Sprintf(format, args...))
	}
	switch rt.Scope.Kind {
	case httpapi.ScopeGlobal:
		if rt.Perm.Verb() != "read" {
			return deny("%s changes what belongs to no scope", rt)
		}
		return nil
	case httpapi.ScopeFiltered:
		return nil // the handler shows and changes only what the scope may
	case httpapi.ScopeServerWide:
		return deny("%s shows figures of every scope's data; it is for tokens bound to no scope", rt)
	case httpapi.ScopeNamed, httpapi.ScopeChild:
		name := rt.ScopeOf(r)
		if name == "" {
			return deny("name a scope within %s (%s)", p.Scope, rt.Scope.Param)
		}
		if rt.Scope.Kind == httpapi.ScopeChild && name == p.Scope {
			return deny("a scope's own definition is changed by the owner of its parent")
		}
		return s.authz.Authorize(r.Context(), p, rt.Perm, name)
	}
	return deny("%s does not declare how it honours scopes", rt)
}

// mayEdit checks that the caller of r may use perm on every scope named
// (documents of an apply, a new scope's parent): nil for an unbound caller.
func (s *Server) mayEdit(r *http.Request, perm auth.Permission, scopes ...string) error {
	p, _ := auth.FromContext(r.Context())
	for _, sc := range scopes {
		if err := s.authz.Authorize(r.Context(), p, perm, sc); err != nil {
			return err
		}
		if p.Scoped() && sc == "" {
			return fmt.Errorf("%w: %s (role %s on scope %s) may not change what is outside its scope", auth.ErrForbidden, p, p.Role, p.Scope)
		}
	}
	return nil
}
