package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/store"
	"github.com/palisade-dev/palisade/pkg/api"
)

const bucketFilters = policy.BucketFilters

// SavedFilter is a named inventory filter (later the building block of scopes).
type SavedFilter = api.SavedFilter

// Saved filters belong to a scope (SavedFilter.Scope, per-scope RBAC):
//
//   - a caller bound to a scope saves filters owned by its scope (or,
//     naming it, a descendant) and needs the owner role there
//     (inventory.own); it lists, reads and searches with the filters its
//     scope and the scope's descendants own, and deletes them as owner;
//   - a filter without an owner is global: made by a caller bound to no
//     scope, by an InventoryFilter YAML document, or before filters had
//     owners. Only callers bound to no scope see and change it (their
//     role holds everywhere); a scoped caller never sees it, since a
//     global filter's query may name any team's namespaces. Ancestors'
//     filters are hidden for the same reason.
//
// Names are unique across scopes: a scoped caller saving a name another
// scope (or the top) uses gets 409, which tells it that the name is taken
// and nothing else.
type savedFilters struct{ kv store.KV }

var filterName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$`)

func (f *savedFilters) get(name string) (SavedFilter, bool, error) {
	var sf SavedFilter
	var found bool
	err := f.kv.View(func(tx store.Tx) error {
		b := tx.Get(bucketFilters, name)
		if b == nil {
			return nil
		}
		found = true
		return json.Unmarshal(b, &sf)
	})
	return sf, found, err
}

// all is every saved filter, by name.
func (f *savedFilters) all() ([]SavedFilter, error) {
	out := []SavedFilter{}
	err := f.kv.View(func(tx store.Tx) error {
		return tx.ForEach(bucketFilters, "", func(_ string, v []byte) error {
			var sf SavedFilter
			if json.Unmarshal(v, &sf) == nil {
				out = append(out, sf)
			}
			return nil
		})
	})
	return out, err
}

// sees reports whether the caller of vis may see a saved filter: all of
// them unbound, else those its scope or a descendant owns.
func (v *visibility) sees(sf SavedFilter) bool {
	return v.all || sf.Scope != "" && v.Scope(sf.Scope)
}

// visibleFilter is the saved filter name as the caller of r may see it
// (a filter it may not see does not exist for it).
func (s *Server) visibleFilter(r *http.Request, name string) (SavedFilter, error) {
	sf, ok, err := s.filters.get(name)
	if err != nil {
		return sf, err
	}
	if !ok || !s.visibilityOf(r).sees(sf) {
		return sf, api.NotFound("no saved filter %q", name)
	}
	return sf, nil
}

func (s *Server) listFilters(w http.ResponseWriter, r *http.Request) {
	all, err := s.filters.all()
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	vis := s.visibilityOf(r)
	out := all[:0]
	for _, sf := range all {
		if vis.sees(sf) {
			out = append(out, sf)
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func (s *Server) saveFilter(w http.ResponseWriter, r *http.Request) {
	var sf SavedFilter
	if err := httpapi.ReadJSON(w, r, &sf, 0); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	if !filterName.MatchString(sf.Name) {
		httpapi.WriteError(w, api.BadRequest("name", "name: %q must be 1-128 letters, digits, '.', '_' or '-'", sf.Name))
		return
	}
	parsed, err := parseFilter(sf.Filter)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	p, _ := auth.FromContext(r.Context())
	if sf.Scope == "" {
		sf.Scope = p.Scope // the creator's; "" (global) for an unbound caller
	}
	if err := s.mayOwnFilter(r, p, sf.Scope); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	if _, ok := s.policy.repo.Scope(sf.Scope); sf.Scope != "" && !ok {
		httpapi.WriteError(w, api.BadRequest("scope", "scope: no scope %q", sf.Scope))
		return
	}
	sf.Filter = parsed.String()
	sf.Created = time.Now().UTC()
	b, _ := json.Marshal(sf)
	vis := s.visibilityOf(r)
	err = s.kv.Update(func(tx store.Tx) error {
		if old := tx.Get(bucketFilters, sf.Name); old != nil && !vis.all {
			var prev SavedFilter
			if json.Unmarshal(old, &prev) != nil || !vis.sees(prev) {
				return api.Errorf(http.StatusConflict, "a saved filter named %q exists outside scope %s: choose another name", sf.Name, p.Scope)
			}
			// Replacing a filter moves it from its scope: own that one too.
			if err := s.mayOwnFilter(r, p, prev.Scope); err != nil {
				return err
			}
		}
		return tx.Put(bucketFilters, sf.Name, b)
	})
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, sf)
}

// mayOwnFilter checks that p may save or delete a filter owned by scope:
// a scoped caller needs the owner role on it (its own scope or a
// descendant); an unbound caller's route permission (inventory.write)
// holds everywhere.
func (s *Server) mayOwnFilter(r *http.Request, p auth.Principal, scope string) error {
	if !p.Scoped() {
		return nil
	}
	if err := s.authz.Authorize(r.Context(), p, auth.InventoryOwn, scope); err != nil {
		return api.Errorf(http.StatusForbidden, "%v", err)
	}
	return nil
}

func (s *Server) getFilter(w http.ResponseWriter, r *http.Request) {
	sf, err := s.visibleFilter(r, r.PathValue("name"))
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, sf)
}

func (s *Server) deleteFilter(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p, _ := auth.FromContext(r.Context())
	var sf SavedFilter
	err := s.mayOwnFilter(r, p, p.Scope) // a scoped viewer or operator deletes none
	if err == nil {
		sf, err = s.visibleFilter(r, name)
	}
	if err == nil {
		err = s.mayOwnFilter(r, p, sf.Scope)
	}
	if err == nil {
		err = s.kv.Update(func(tx store.Tx) error { return tx.Delete(bucketFilters, name) })
	}
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// discoveryPins are the saved filters that name clusters in a discovery of
// scope: the global ones and those of the scope, its ancestors and its
// descendants (never another team's: their text would show in the
// result). Read from the store, so a filter saved through the API pins at
// once.
func (s *Server) discoveryPins(scope string) ([]policy.NamedFilter, error) {
	all, err := s.filters.all()
	if err != nil {
		return nil, fmt.Errorf("saved filters: %w", err)
	}
	var pins []policy.NamedFilter
	for _, sf := range all {
		if sf.Scope == "" || s.authz.Within(sf.Scope, scope) || s.authz.Within(scope, sf.Scope) {
			pins = append(pins, policy.NamedFilter{Name: sf.Name, Filter: sf.Filter, Description: sf.Description})
		}
	}
	return pins, nil
}
