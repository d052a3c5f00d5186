package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"

	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
)

// The policies that apply to one workload (the console's workload page):
// the intents of its scopes — from the top of the scope tree down to the
// scope that decides its flows — whose consumer or provider selects it.

func init() { addRoutes((*Server).workloadPolicyRoutes) }

func (s *Server) workloadPolicyRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/api/v1/workload-policies", Perm: auth.Permission("policy.read"), Scope: httpapi.Filtered, Handler: s.workloadPolicies},
	}
}

// WorkloadPolicies answers GET /api/v1/workload-policies?id=WORKLOAD.
type WorkloadPolicies struct {
	Workload string `json:"workload"`
	// Scopes are the workload's scopes, from the top down to the one that
	// decides its flows (empty: no scope holds it).
	Scopes []string `json:"scopes"`
	// Versions are the version read per scope: the enforced one, else the
	// newest (scopes without a version are left out).
	Versions map[string]string `json:"versions"`
	Policies []AppliedPolicy   `json:"policies"`
}

// AppliedPolicy is an intent of one of the workload's scopes that selects
// the workload on one side (or both).
type AppliedPolicy struct {
	Rule     string        `json:"rule"` // SCOPE@VERSION#INDEX, as analysis names rules
	Scope    string        `json:"scope"`
	Version  string        `json:"version"`
	Index    int           `json:"index"`
	Enforced bool          `json:"enforced"`      // the version is the scope's enforced one
	Side     string        `json:"side"`          // consumer, provider or both
	Via      string        `json:"via,omitempty"` // how a provider selects it: "service NS/NAME" for a pod behind the service
	Policy   policy.Policy `json:"policy"`
}

func (s *Server) workloadPolicies(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if id == "" {
		writeError(w, http.StatusBadRequest, errors.New("id: give the workload's inventory ID (id=CLUSTER/KIND/NAMESPACE/NAME)"))
		return
	}
	vis := s.visibilityOf(r)
	wl, _, ok := s.Inventory.Get(id)
	if !ok || !vis.Workload(wl) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no workload with id %q", id))
		return
	}
	out, err := s.policy.applying(wl)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	// A caller bound to a scope sees its scope and those below only.
	out.Policies = slices.DeleteFunc(out.Policies, func(p AppliedPolicy) bool { return !vis.Scope(p.Scope) })
	for sc := range out.Versions {
		if !vis.Scope(sc) {
			delete(out.Versions, sc)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// applying lists the intents of wl's scopes that select it.
func (p *policyAPI) applying(wl *inventory.Workload) (*WorkloadPolicies, error) {
	out := &WorkloadPolicies{Workload: wl.ID, Scopes: p.workloadScopes(wl), Versions: map[string]string{}, Policies: []AppliedPolicy{}}
	m := newMembership(p.repo.Scopes(), inventory.Record{W: wl})
	svcs := p.services()
	for _, name := range out.Scopes {
		sc, ok := p.repo.Scope(name)
		if !ok {
			continue // deleted meanwhile
		}
		v, err := p.repo.Version(name, sc.Enforced) // "": the newest
		if errors.Is(err, policy.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out.Versions[name] = v.Name
		for i, pol := range v.Policies {
			cons, _ := selects(pol.Consumer, wl, m, svcs)
			prov, via := selects(pol.Provider, wl, m, svcs)
			side := ""
			switch {
			case cons && prov:
				side = "both"
			case cons:
				side = "consumer"
			case prov:
				side = "provider"
			default:
				continue
			}
			if !prov {
				via = ""
			}
			ref := policy.RuleRef{Scope: name, Version: v.Name, Index: i}
			out.Policies = append(out.Policies, AppliedPolicy{Rule: ref.String(), Scope: name, Version: v.Name, Index: i,
				Enforced: sc.Enforced == v.Name, Side: side, Via: via, Policy: pol})
		}
	}
	return out, nil
}

// selects reports whether a consumer or provider selects wl, and for a
// service provider that selects the pods behind it, which service.
func selects(endpoint string, wl *inventory.Workload, m *membership, svcs map[string]*inventory.Workload) (bool, string) {
	e, err := policy.ParseEndpoint(endpoint)
	if err != nil {
		return false, "" // stored versions were validated; a later schema change drops the intent here
	}
	switch e.Kind {
	case policy.EndpointAny:
		return true, ""
	case policy.EndpointFilter:
		return e.Filter.Match(inventory.Record{W: wl}), ""
	case policy.EndpointScope:
		return m.member(e.Scope), ""
	case policy.EndpointCIDR:
		for _, s := range wl.IPs {
			if a, err := netip.ParseAddr(s); err == nil && e.Prefix.Contains(a) {
				return true, ""
			}
		}
		return false, ""
	case policy.EndpointService:
		if wl.Kind == inventory.KindService {
			return wl.Namespace == e.Namespace && wl.Name == e.Name, ""
		}
		svc := svcs[e.Namespace+"/"+e.Name]
		if wl.Kind != inventory.KindPod || svc == nil || len(svc.Selector) == 0 || wl.Namespace != svc.Namespace {
			return false, ""
		}
		for k, v := range svc.Selector {
			if wl.Labels[k] != v {
				return false, ""
			}
		}
		return true, "service " + e.Namespace + "/" + e.Name
	}
	return false, ""
}

// membership answers "is the workload in scope X" for scope:NAME
// endpoints: X's filter holds and so does every ancestor's.
type membership struct {
	scopes map[string]policy.ScopeRecord
	rec    filter.Record
	memo   map[string]bool
}

func newMembership(all []policy.ScopeRecord, rec filter.Record) *membership {
	m := &membership{scopes: map[string]policy.ScopeRecord{}, rec: rec, memo: map[string]bool{}}
	for _, s := range all {
		m.scopes[s.Name] = s
	}
	return m
}

func (m *membership) member(name string) bool {
	if name == "" || name == policy.RootScope {
		return true
	}
	if v, ok := m.memo[name]; ok {
		return v
	}
	m.memo[name] = false // a cycle (refused on apply) ends here
	s, ok := m.scopes[name]
	if !ok {
		return false
	}
	f, err := filter.Parse(s.Filter, inventory.Schema)
	v := err == nil && f.Match(m.rec) && m.member(s.Parent)
	m.memo[name] = v
	return v
}
