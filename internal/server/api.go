package server

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/filter"
	"github.com/palisade-dev/palisade/internal/flow/flowapi"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/pkg/api"
)

func (s *Server) coreRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/healthz", Perm: auth.Public, Handler: func(w http.ResponseWriter, _ *http.Request) {
			httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		}},
		{Method: "GET", Pattern: "/api/v1/status", Perm: auth.StatusRead, Scope: httpapi.Filtered, Handler: s.getStatus},
		{Method: "GET", Pattern: "/api/v1/inventory", Perm: auth.InventoryRead, Scope: httpapi.Filtered, Handler: s.searchInventory},
		{Method: "GET", Pattern: "/api/v1/inventory/lookup", Perm: auth.InventoryRead, Scope: httpapi.Filtered, Handler: s.lookup},
		{Method: "GET", Pattern: "/api/v1/inventory/{id...}", Perm: auth.InventoryRead, Scope: httpapi.Filtered, Handler: s.getWorkload},
		{Method: "POST", Pattern: "/api/v1/external", Perm: auth.InventoryWrite, Scope: httpapi.Global, Handler: s.putExternal},
		{Method: "DELETE", Pattern: "/api/v1/external/{name}", Perm: auth.InventoryWrite, Scope: httpapi.Global, Handler: s.deleteExternal, Before: s.externalBefore},
		{Method: "GET", Pattern: "/api/v1/filters", Perm: auth.InventoryRead, Scope: httpapi.Filtered, Handler: s.listFilters},
		{Method: "POST", Pattern: "/api/v1/filters", Perm: auth.InventoryWrite, Scope: httpapi.Filtered, Handler: s.saveFilter},
		{Method: "GET", Pattern: "/api/v1/filters/{name}", Perm: auth.InventoryRead, Scope: httpapi.Filtered, Handler: s.getFilter},
		{Method: "DELETE", Pattern: "/api/v1/filters/{name}", Perm: auth.InventoryWrite, Scope: httpapi.Filtered, Handler: s.deleteFilter, Before: s.filterBefore},
	}
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) {
	st := api.Status{Version: Version, Commit: Commit, Started: s.started, Connectors: []api.ConnectorStatus{}}
	for _, c := range s.Connectors() {
		st.Connectors = append(st.Connectors, api.ConnectorStatus(c))
	}
	vis := s.visibilityOf(r)
	if vis.All() {
		fs := s.flowStore.Stats()
		st.Workloads, st.FlowStore = s.Inventory.Len(), &fs
		if s.Vuln != nil {
			vs := s.Vuln.Status()
			st.Scanner = &vs
		}
		httpapi.WriteJSON(w, http.StatusOK, st)
		return
	}
	// A scoped caller: counts over its scope, and nothing that describes
	// the whole store, the scanner's queue or how the server reaches the
	// clusters (pkg/api.Status; docs/SECURITY.md).
	st.Scope = vis.scope
	ctx, cancel := context.WithTimeout(r.Context(), flowapi.SearchTimeout)
	defer cancel()
	visible, err := s.Inventory.SearchContext(ctx, nil, inventory.SearchOptions{Keep: vis.Workload})
	if err != nil {
		httpapi.WriteError(w, httpapi.Stopped(err, flowapi.SearchTimeout))
		return
	}
	st.Workloads = len(visible)
	for i, c := range st.Connectors {
		st.Connectors[i] = api.ConnectorStatus{Cluster: c.Cluster, State: c.State, Since: c.Since, LastSync: c.LastSync}
	}
	httpapi.WriteJSON(w, http.StatusOK, st)
}

// parseFilter parses an inventory filter; errors carry the column.
func parseFilter(src string) (*filter.Filter, error) {
	f, err := filter.Parse(src, inventory.Schema)
	if err != nil {
		return nil, &api.Error{Status: http.StatusBadRequest, Message: "filter: " + err.Error(), Position: err.(*filter.Error).Pos, Field: "filter"}
	}
	return f, nil
}

// maxSearchLimit caps limit= of inventory searches.
const maxSearchLimit = 100000

func (s *Server) searchInventory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	src := q.Get("filter")
	if name := q.Get("saved"); name != "" {
		sf, err := s.visibleFilter(r, name)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		src = sf.Filter
	}
	f, err := parseFilter(src)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	opts := inventory.SearchOptions{IncludeDeleted: q.Get("include_deleted") == "true"}
	if opts.Limit, err = httpapi.QueryInt(r, "limit", 0, 0, maxSearchLimit); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	if vis := s.visibilityOf(r); !vis.All() {
		opts.Keep = vis.Workload
	}
	ctx, cancel := context.WithTimeout(r.Context(), flowapi.SearchTimeout)
	defer cancel()
	res, err := s.Inventory.SearchContext(ctx, f, opts)
	if err != nil {
		httpapi.WriteError(w, httpapi.Stopped(err, flowapi.SearchTimeout))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, api.InventoryList{Count: len(res), Items: res})
}

func (s *Server) getWorkload(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	wl, hist, ok := s.Inventory.Get(id)
	vis := s.visibilityOf(r)
	if !ok || !vis.Workload(wl) {
		httpapi.WriteError(w, api.NotFound("no workload with id %q", id))
		return
	}
	scopes := slices.DeleteFunc(s.policy.workloadScopes(wl), func(sc string) bool { return !vis.Scope(sc) })
	httpapi.WriteJSON(w, http.StatusOK, api.WorkloadDetail{Workload: wl, History: hist, Scopes: scopes})
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ip, err := netip.ParseAddr(q.Get("ip"))
	if err != nil {
		httpapi.WriteError(w, api.BadRequest("ip", "ip: %q is not an IP address", q.Get("ip")))
		return
	}
	at := time.Now()
	if v := q.Get("at"); v != "" {
		if at, err = time.Parse(time.RFC3339Nano, v); err != nil {
			httpapi.WriteError(w, api.BadRequest("at", "at: %q is not an RFC 3339 time", v))
			return
		}
	}
	wl, ok := s.Inventory.Lookup(ip, at)
	if !ok || !s.visibilityOf(r).Workload(wl) {
		httpapi.WriteError(w, api.NotFound("no workload held %s at %s", ip, at.Format(time.RFC3339)))
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, wl)
}

func (s *Server) putExternal(w http.ResponseWriter, r *http.Request) {
	var req api.External
	if err := httpapi.ReadJSON(w, r, &req, 0); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	if req.Name == "" || strings.ContainsAny(req.Name, "/ ") {
		httpapi.WriteError(w, api.BadRequest("name", "name: %q must be non-empty, without '/' or spaces", req.Name))
		return
	}
	if len(req.CIDRs) == 0 {
		httpapi.WriteError(w, api.BadRequest("cidrs", "cidrs: at least one IP or CIDR is required"))
		return
	}
	wl := inventory.Workload{ID: "external/" + req.Name, Kind: inventory.KindExternal, Name: req.Name, Labels: req.Labels}
	for i, c := range req.CIDRs {
		if a, err := netip.ParseAddr(c); err == nil {
			c = netip.PrefixFrom(a, a.BitLen()).String()
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			httpapi.WriteError(w, api.BadRequest("cidrs", "cidrs[%d]: %q is not an IP or CIDR", i, c))
			return
		}
		wl.CIDRs = append(wl.CIDRs, p.Masked().String())
	}
	s.Inventory.Apply(wl)
	got, _, _ := s.Inventory.Get(wl.ID)
	httpapi.WriteJSON(w, http.StatusCreated, got)
}

func (s *Server) deleteExternal(w http.ResponseWriter, r *http.Request) {
	id := "external/" + r.PathValue("name")
	if !s.Inventory.Delete(id, time.Now()) {
		httpapi.WriteError(w, api.NotFound("no external workload %q", r.PathValue("name")))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// externalBefore is the external workload a deletion names (audit).
func (s *Server) externalBefore(r *http.Request) any {
	if wl, _, ok := s.Inventory.Get("external/" + r.PathValue("name")); ok {
		return wl
	}
	return nil
}

// filterBefore is the saved filter a deletion names (audit).
func (s *Server) filterBefore(r *http.Request) any {
	if sf, ok, _ := s.filters.get(r.PathValue("name")); ok {
		return sf
	}
	return nil
}
